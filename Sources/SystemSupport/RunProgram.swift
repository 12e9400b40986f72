// Running a helper program to its end: Docker's credential helpers, `busybox --list`. Not for
// a container's processes (ContainerKernel's spawner makes those).

import CSyscalls
package import Glibc

/// Runs `arguments` (the first found on `PATH`), gives it `input` on its standard input, and
/// collects its standard output; its standard error goes to `/dev/null`.
///
/// The input is written whole before the output is read, so it must be small (a pipe holds
/// 64 KiB); the output is read to its end or to `outputLimit` bytes.
///
/// - Parameters:
///   - arguments: The program and its arguments.
///   - input: Its standard input.
///   - outputLimit: The most bytes of output kept; past it the output is cut.
/// - Returns: The program's exit status (128 + the signal's number when a signal ended it)
///   and its output.
/// - Throws: ``SystemError`` when the program cannot be started (`ENOENT` when it is not on
///   `PATH`) or a pipe fails.
package func runProgramToEnd(_ arguments: [String], input: [UInt8] = [], outputLimit: Int = 1 << 20)
    throws(SystemError) -> (status: Int32, output: [UInt8])
{
    var toChild: [Int32] = [-1, -1]
    var fromChild: [Int32] = [-1, -1]
    _ = try sys("create a pipe") { ck_pipe_cloexec(&toChild) }
    let inputWrite = OwnedFD(toChild[1])
    let inputRead = OwnedFD(toChild[0])
    _ = try sys("create a pipe") { ck_pipe_cloexec(&fromChild) }
    let outputRead = OwnedFD(fromChild[0])
    let outputWrite = OwnedFD(fromChild[1])

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, inputRead.raw, 0)
    posix_spawn_file_actions_adddup2(&actions, outputWrite.raw, 1)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, arguments[0], &actions, nil, argv, environ)
    guard rc == 0 else {
        throw SystemError(errno: .init(rawValue: rc), detail: "run \(arguments[0])", path: arguments[0])
    }
    inputRead.close()
    outputWrite.close()

    // A program that exits without reading its input must not end this process: SIGPIPE is
    // blocked on this thread for the write, and one that the write raised is taken off before
    // the mask is restored. Its exit status says what went wrong.
    var pipeSignal = sigset_t()
    sigemptyset(&pipeSignal)
    sigaddset(&pipeSignal, SIGPIPE)
    var previous = sigset_t()
    pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous)
    let written = input.withUnsafeBytes { buffer in
        Result { () throws(SystemError) in try writeAll(inputWrite.raw, buffer, path: arguments[0]) }
    }
    if case .failure(let error) = written, error.is(.brokenPipe) {
        var now = timespec()
        _ = sigtimedwait(&pipeSignal, nil, &now)
    }
    pthread_sigmask(SIG_SETMASK, &previous, nil)
    inputWrite.close()
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16384)
    while true {
        let n = try sys("read the output of", path: arguments[0]) { read(outputRead.raw, &buffer, buffer.count) }
        if n == 0 { break }
        output += buffer[..<min(n, max(0, outputLimit - output.count))]
    }
    var status: Int32 = 0
    _ = try sys("wait for", path: arguments[0]) { waitpid(pid, &status, 0) }
    let signal = status & 0x7f
    return (signal == 0 ? (status >> 8) & 0xff : 128 + signal, output)
}
