// Shared pieces of TestSupport: its error type, temporary directories, the probe's output
// format, and small file/process helpers built on Glibc (procfs files report a size of 0, so
// they are read with plain `read` loops rather than Foundation's whole-file readers).

import Foundation
import Glibc

/// An error raised by the test support code, with a message saying what was being attempted.
public struct TestSupportError: Error, Sendable, CustomStringConvertible {
    /// A lower-case message naming the object, e.g. `"compile /bin/probe: …"`.
    public var description: String

    /// Creates an error with the given message.
    ///
    /// - Parameter description: What was being attempted and what went wrong.
    public init(_ description: String) {
        self.description = description
    }

    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> TestSupportError {
        TestSupportError("\(what): \(String(cString: strerror(code))) (errno \(code))")
    }
}

/// A directory created for one test, removed by the caller with ``remove()``.
///
/// Removal refuses to run while anything is still mounted inside the directory, so a test
/// that leaked a bind mount cannot make the cleanup delete through it into the host.
public struct TemporaryDirectory: Sendable {
    /// The absolute path of the directory.
    public let path: String

    /// Creates a new, empty directory with mode 0755.
    ///
    /// - Parameters:
    ///   - prefix: The start of the directory's name; a random suffix is appended.
    ///   - parent: The directory to create it in; created if missing.
    /// - Throws: ``TestSupportError`` when the directory cannot be created.
    public init(prefix: String = "tmp", in parent: String = TestRootfs.cacheDirectory + "/tmp") throws {
        try makeDirectories(parent)
        var template = Array("\(parent)/\(prefix)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw TestSupportError.errno("create a temporary directory in \(parent)")
        }
        path = String(cString: made)
        guard chmod(path, 0o755) == 0 else {
            throw TestSupportError.errno("chmod 0755 \(path)")
        }
    }

    /// Deletes the directory and everything in it.
    ///
    /// - Throws: ``TestSupportError`` if something is still mounted at or below the directory
    ///   (nothing is deleted then), or if deleting fails.
    public func remove() throws {
        let mounted = MountTable.read().map(\.target).filter { $0 == path || $0.hasPrefix(path + "/") }
        guard mounted.isEmpty else {
            throw TestSupportError("remove \(path): still mounted inside it: \(mounted.joined(separator: ", "))")
        }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw TestSupportError("remove \(path): \(error)")
        }
    }
}

/// The parsed output of one `/bin/probe` command.
///
/// The probe prints `key=value` data lines and ends an action with a result line, `ok` or
/// `errno=NAME (N)`. The plumbing commands (`echo`, `env`, `cat`, `write-stdout-stderr`)
/// print raw data, which is kept in ``lines``.
public struct ProbeOutput: Sendable, Equatable {
    /// How an action ended.
    public enum Result: Sendable, Equatable {
        /// The action succeeded.
        case ok
        /// The action failed with this errno, for example `name: "EPERM", code: 1`.
        case failed(name: String, code: Int32)
    }

    /// Every line printed, without newlines.
    public var lines: [String]
    /// The result line of the action, if the command printed one.
    public var result: Result?

    /// Parses the probe's standard output.
    ///
    /// - Parameter text: Everything the probe wrote to standard output.
    public init(_ text: String) {
        lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        result = nil
        for line in lines.reversed() {
            if line == "ok" {
                result = .ok
                break
            }
            if line.hasPrefix("errno="), let parsed = Self.parseErrno(line) {
                result = parsed
                break
            }
        }
    }

    /// The value of the last `key=value` line with this key, e.g. `output["CapEff"]`.
    public subscript(key: String) -> String? {
        values(key).last
    }

    /// The values of every `key=value` line with this key, in order (e.g. each `iface`).
    ///
    /// - Parameter key: The text before `=`.
    /// - Returns: The text after the first `=` of each matching line.
    public func values(_ key: String) -> [String] {
        let prefix = key + "="
        return lines.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    private static func parseErrno(_ line: String) -> Result? {
        // errno=EPERM (1)
        let body = line.dropFirst("errno=".count)
        guard let open = body.firstIndex(of: "("), let close = body.lastIndex(of: ")"), open < close,
            let code = Int32(body[body.index(after: open)..<close])
        else { return nil }
        return .failed(name: body[..<open].trimmingCharacters(in: .whitespaces), code: code)
    }
}

/// The super options of the last mount at `target` in this process's mount namespace (for
/// overlay: its lowerdir, upperdir and workdir), or nil when nothing is mounted there. Reads
/// the whole of mountinfo, however long: a page-sized read misses later mounts.
public func mountSuperOptions(at target: String) -> String? {
    MountTable.read().last { $0.target == target }?.superOptions
}

// MARK: - Internal helpers

/// One line of /proc/self/mountinfo.
struct MountEntry: Sendable, Hashable {
    var target: String
    var fsType: String
    var source: String
    var superOptions: String
}

enum MountTable {
    /// The mounts of this process's mount namespace; empty if mountinfo cannot be read.
    static func read() -> [MountEntry] {
        guard let text = readTextFile("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            // id parent major:minor root target options [optional fields...] - fstype source superopts
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard fields.count >= 9, let dash = fields[6...].firstIndex(of: "-"), dash + 2 < fields.count
            else { return nil }
            return MountEntry(
                target: unescapeMountField(fields[4]),
                fsType: fields[dash + 1],
                source: unescapeMountField(fields[dash + 2]),
                superOptions: dash + 3 < fields.count ? fields[dash + 3] : ""
            )
        }
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    private static func unescapeMountField(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\"), i + 3 < raw.count,
                let value = UInt8(String(decoding: raw[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Reads a whole file with `read(2)`, which also works for procfs/sysfs/cgroupfs files.
func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n < 0 { return nil }
        if n == 0 { return result }
        result.append(contentsOf: buffer[0..<n])
    }
}

/// ``readFile(_:)`` that throws, naming the path, when the file cannot be read.
public func readBytes(_ path: String) throws -> [UInt8] {
    guard let bytes = readFile(path) else { throw TestSupportError.errno("read \(path)") }
    return bytes
}

func readTextFile(_ path: String) -> String? {
    readFile(path).map { String(decoding: $0, as: UTF8.self) }
}

/// The entries of a directory (without `.` and `..`), each with whether it is a directory.
/// Returns nil if the directory cannot be opened.
func listDirectory(_ path: String) -> [(name: String, isDirectory: Bool)]? {
    guard let dir = opendir(path) else { return nil }
    defer { closedir(dir) }
    var entries: [(name: String, isDirectory: Bool)] = []
    while let entry = readdir(dir) {
        let name = withUnsafePointer(to: &entry.pointee.d_name) {
            String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
        }
        if name == "." || name == ".." { continue }
        var isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
        if entry.pointee.d_type == UInt8(DT_UNKNOWN) {
            var st = stat()
            isDirectory = lstat(path + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
        }
        entries.append((name, isDirectory))
    }
    return entries
}

/// The target of a symbolic link, or nil when `path` is not one.
public func readLink(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// `mkdir -p` with mode 0755.
func makeDirectories(_ path: String) throws {
    var current = ""
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, 0o755) != 0 && errno != EEXIST {
            throw TestSupportError.errno("mkdir \(current)")
        }
    }
}

/// Runs a program (looked up in PATH) to completion and returns its exit status and its
/// standard output and error, merged. The child is always reaped before this returns.
///
/// - Parameter argv: The program and its arguments.
/// - Returns: The exit status and the merged output.
/// - Throws: ``TestSupportError`` when the program cannot be started.
public func runProgram(_ argv: [String]) throws -> (status: Int32, output: String) {
    guard let program = argv.first else { throw TestSupportError("run: empty command line") }
    var fds: [Int32] = [-1, -1]
    // Close-on-exec, so programs spawned concurrently by other threads do not hold the write
    // end open; posix_spawn's dup2 gives this child its own inheritable copy.
    guard pipe(&fds) == 0 else { throw TestSupportError.errno("pipe for \(program)") }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)

    let cArgs = argv.map { strdup($0) }
    defer { cArgs.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, program, &actions, nil, cArgs + [nil], environ)
    close(fds[1])
    defer { close(fds[0]) }
    guard rc == 0 else { throw TestSupportError.errno("spawn \(program)", rc) }

    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        output.append(contentsOf: buffer[0..<n])
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { throw TestSupportError.errno("wait for \(program)") }
    }
    // WIFEXITED / WEXITSTATUS are macros Swift cannot import.
    let exitCode: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exitCode, String(decoding: output, as: UTF8.self))
}

/// The whole disk that `/var/tmp` lives on, by path and by number (`major:minor`): this
/// machine's root disk, the scratch disk of the `make test-vm` guest; what the block I/O limit
/// tests throttle. `nil` when `/var/tmp` is not on a whole disk: a tmpfs (no `O_DIRECT` before
/// Linux 6.6) or a partition (the kernel throttles whole disks only).
public func scratchDisk() -> (path: String, number: String)? {
    var tmp = stat()
    guard stat("/var/tmp", &tmp) == 0, let disks = try? FileManager.default.contentsOfDirectory(atPath: "/sys/block") else {
        return nil
    }
    for name in disks {
        var node = stat()
        guard stat("/dev/" + name, &node) == 0, node.st_mode & S_IFMT == S_IFBLK, node.st_rdev == tmp.st_dev,
              let number = try? String(contentsOfFile: "/sys/block/\(name)/dev", encoding: .utf8)
        else { continue }
        return ("/dev/" + name, number.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    return nil
}

/// Runs `body` on a thread of its own and says whether it ended within `seconds`; if not,
/// calls `unstick` (so that a regression fails the test instead of hanging it) and waits for it.
public func finishes(within seconds: Double, _ body: @escaping @Sendable () -> Void, unstick: () -> Void) -> Bool {
    let done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        body()
        done.signal()
    }
    if done.wait(timeout: .now() + seconds) == .success { return true }
    unstick()
    _ = done.wait(timeout: .now() + 30)
    return false
}

/// Opens the FIFO at `path` for writing and closes it, which releases a reader blocked in open.
public func openFifoWriter(_ path: String) {
    let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
    if fd >= 0 { close(fd) }
}
