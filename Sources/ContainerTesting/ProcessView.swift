import Containers
import Glibc
import Layers
import SystemSupport

/// What the host reads of a running container's main process through `/proc/<pid>`: its
/// network namespace's LISTEN sockets and its root filesystem.
///
/// A pid names a process only until it is reaped, so the directory is opened first and the
/// container is checked afterwards to still be running with that pid: then the process that
/// had the pid at the open was the container's. Everything after goes through the open
/// directory, which stays bound to that process: once it has exited, reads through it fail
/// instead of reaching a process that took the pid over.
struct ProcessView: ~Copyable {
    private let directory: Int32

    /// Opens the view of `container`'s main process.
    ///
    /// - Throws: `SystemError` when the container does not run or the directory cannot be opened.
    init(of container: Container) throws(SystemError) {
        guard container.state.status == .running, let pid = container.state.pid else {
            throw SystemError(detail: "the container is \(container.state.status)")
        }
        let fd = open("/proc/\(pid)", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError.current("open", path: "/proc/\(pid)") }
        guard container.state.status == .running, container.state.pid == pid else {
            close(fd)
            throw SystemError(detail: "the container is \(container.state.status)")
        }
        directory = fd
    }

    deinit { close(directory) }

    /// The TCP ports with a socket in LISTEN state in the process's network namespace, IPv4
    /// and IPv6, on any address.
    func listeningTCPPorts() throws(SystemError) -> Set<UInt16> {
        var ports: Set<UInt16> = []
        for table in ["net/tcp", "net/tcp6"] {
            // A kernel without IPv6 has no tcp6 table.
            guard let text = try read(table, missingIsEmpty: table == "net/tcp6") else { continue }
            ports.formUnion(Self.listening(inTCPTable: text))
        }
        return ports
    }

    /// The TCP ports with a socket in LISTEN state in the test process's own network namespace
    /// (where published ports listen), IPv4 and IPv6.
    static func hostListeningTCPPorts() throws(SystemError) -> Set<UInt16> {
        var ports: Set<UInt16> = []
        for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
            let bytes: [UInt8]
            do {
                bytes = try readWholeFile(table)
            } catch where error.errno == .noSuchFileOrDirectory && table.hasSuffix("6") {
                continue
            }
            ports.formUnion(listening(inTCPTable: String(decoding: bytes, as: UTF8.self)))
        }
        return ports
    }

    /// Whether `path` exists in the process's root filesystem, resolved inside that root.
    func exists(_ path: String) throws(LayerError) -> Bool {
        let root = openat(directory, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw LayerError(code: .io, detail: "open the root of the container's process") }
        defer { close(root) }
        return try lookUpPath(path, in: "/proc/self/fd/\(root)") != nil
    }

    /// The local ports of the LISTEN rows (state `0A`) of a `/proc/net/tcp{,6}` table:
    /// `sl local_address rem_address st …`, the local address as `HEXADDR:HEXPORT`.
    static func listening(inTCPTable text: String) -> Set<UInt16> {
        var ports: Set<UInt16> = []
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 3, fields[3] == "0A", let colon = fields[1].lastIndex(of: ":"),
                  let port = UInt16(fields[1][fields[1].index(after: colon)...], radix: 16) else { continue }
            ports.insert(port)
        }
        return ports
    }

    /// The text of a file below the process's directory; `nil` when it is missing and that is allowed.
    private func read(_ name: String, missingIsEmpty: Bool) throws(SystemError) -> String? {
        let fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 && errno == ENOENT && missingIsEmpty { return nil }
        guard fd >= 0 else { throw SystemError.current("open", path: name) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw SystemError.current("read", path: name) }
            if count == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes += buffer[..<count]
        }
    }
}
