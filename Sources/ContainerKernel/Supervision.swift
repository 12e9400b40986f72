import Glibc

/// How a *detached* process is held: by `berth-supervisor`, a small C program built with this
/// package, instead of by the spawning process.
///
/// The supervisor is the process's parent. It writes the process's stdout and stderr to a log
/// of JSON lines (Docker's `json-file` format, rotated by size), reaps the process, records how
/// it ended in a status file, and exits. So the process outlives the program that spawned it,
/// and any other program can later read its log, signal it and learn its exit status
/// (``ProcessHandle/adopt(pid:supervisorPID:supervisorStartTime:statusPath:cgroup:)``).
///
/// ```swift
/// var spec = ProcessSpec(rootfs: rootfs, arguments: ["/bin/sleep", "60"])
/// spec.supervision = Supervision(executable: try Supervision.locateExecutable(),
///                                statusPath: dir + "/exit-status", logPath: dir + "/container.log")
/// let process = try await ProcessHandle.spawn(spec)   // survives this program's exit
/// ```
///
/// Supervised processes write their output through pipes: a terminal or a stdin pipe needs the
/// spawning process and is refused.
public struct Supervision: Sendable, Hashable {
    /// The `berth-supervisor` executable.
    public var executable: String
    /// Where the supervisor records the exit status when the process has ended.
    public var statusPath: String
    /// The log file of stdout and stderr.
    public var logPath: String
    /// Bytes at which the log rotates.
    public var logMaximumSize: Int
    /// How many log files are kept, the current one included.
    public var logMaximumFiles: Int

    /// Describes a supervision.
    ///
    /// - Parameters:
    ///   - executable: The `berth-supervisor` executable (see ``locateExecutable()``).
    ///   - statusPath: Where the exit status is recorded; remove a stale one before spawning.
    ///   - logPath: The log file.
    ///   - logMaximumSize: Bytes at which the log rotates (10 MiB by default).
    ///   - logMaximumFiles: Log files kept (3 by default).
    public init(executable: String, statusPath: String, logPath: String, logMaximumSize: Int = 10 << 20,
                logMaximumFiles: Int = 3) {
        self.executable = executable
        self.statusPath = statusPath
        self.logPath = logPath
        self.logMaximumSize = logMaximumSize
        self.logMaximumFiles = logMaximumFiles
    }

    /// Finds `berth-supervisor`: `BERTH_SUPERVISOR` if set, else beside the running
    /// executable (where SwiftPM puts every product of a package).
    ///
    /// - Returns: The executable's path.
    /// - Throws: ``KernelError`` with ``KernelError/Code/unsupported`` naming where it looked.
    public static func locateExecutable() throws(KernelError) -> String {
        if let path = getenv("BERTH_SUPERVISOR").map({ String(cString: $0) }), !path.isEmpty {
            guard access(path, X_OK) == 0 else {
                throw KernelError(code: .unsupported, detail: "BERTH_SUPERVISOR=\(path) is not an executable")
            }
            return path
        }
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let executable = count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        let beside = String(executable[..<(executable.lastIndex(of: "/") ?? executable.startIndex)]) + "/berth-supervisor"
        guard access(beside, X_OK) == 0 else {
            throw KernelError(
                code: .unsupported,
                detail: "detached processes need berth-supervisor: not found at \(beside) (build the package's berth-supervisor product, or set BERTH_SUPERVISOR)")
        }
        return beside
    }

    /// The supervisor's arguments for a process whose stdout and stderr (those that are pipes)
    /// become the supervisor's descriptors 3 and 4, in that order.
    func arguments(stdout: Bool, stderr: Bool) -> [String] {
        var arguments = [executable, "--status", statusPath, "--log", logPath, "--log-max-size", "\(logMaximumSize)",
                         "--log-max-files", "\(logMaximumFiles)"]
        var next = 3
        if stdout {
            arguments += ["--output", "stdout:\(next)"]
            next += 1
        }
        if stderr { arguments += ["--output", "stderr:\(next)"] }
        return arguments
    }

    /// Reads the status the supervisor recorded: waitid's `CLD_*` code and status, or `nil`
    /// when there is none (the supervisor was killed before the process ended).
    static func readStatus(at path: String) -> (code: Int32, status: Int32)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &bytes, bytes.count)
        guard count > 0 else { return nil }
        let fields = String(decoding: bytes[0..<count], as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count == 2, let code = Int32(fields[0]), let status = Int32(fields[1]) else { return nil }
        return (code, status)
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot; with
/// the pid it tells a live process from a reused pid.
package func processStartTime(_ pid: Int32) -> UInt64? {
    let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 1024)
    let count = read(fd, &bytes, bytes.count)
    guard count > 0, let close = bytes[0..<count].lastIndex(of: UInt8(ascii: ")")) else { return nil }
    let fields = bytes[(close + 1)..<count].split(separator: UInt8(ascii: " "))
    return fields.count > 19 ? UInt64(String(decoding: fields[19], as: UTF8.self)) : nil
}

/// The parent of `pid`, from `/proc/<pid>/status`.
func parentProcess(of pid: Int32) -> Int32? {
    let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 4096)
    let count = read(fd, &bytes, bytes.count)
    guard count > 0 else { return nil }
    let text = String(decoding: bytes[0..<count], as: UTF8.self)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") }) else { return nil }
    return Int32(line.dropFirst(5).trimmingPrefix(while: { $0 == "\t" || $0 == " " }))
}
