import FoundationEssentials
import Glibc
import SystemSupport

/// A network as stored in `<root>/networks/<id>.json`: its configuration and its leases.
///
/// A lease is an endpoint: the address is taken exactly while the endpoint is in the file.
struct NetworkRecord: Codable {
    var configuration: NetworkConfiguration
    var endpoints: [Endpoint]
}

/// Networking's files under the Berth root, and the lock that guards them.
///
/// ```
/// <root>/networks/.lock                       flock held for every change (any process)
/// <root>/networks/<id>.json                   a NetworkRecord
/// <root>/networks/sandboxes/<container>/      sandbox.json, hosts, resolv.conf, hostname
/// <root>/netns/<container>                    the pinned network namespace
/// ```
struct NetworkStore: Sendable {
    let networksDirectory: String
    let sandboxesDirectory: String
    let namespacesDirectory: String

    init(root: String) throws(NetworkError) {
        networksDirectory = root + "/networks"
        sandboxesDirectory = networksDirectory + "/sandboxes"
        namespacesDirectory = root + "/netns"
        for directory in [root, networksDirectory, sandboxesDirectory, namespacesDirectory] {
            if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                throw NetworkError.system(.io, "create directory \(directory)")
            }
        }
    }

    func networkPath(_ id: String) -> String { "\(networksDirectory)/\(id).json" }
    func sandboxDirectory(_ containerID: String) -> String { "\(sandboxesDirectory)/\(containerID)" }
    func namespacePath(_ containerID: String) -> String { "\(namespacesDirectory)/\(containerID)" }

    /// Runs `body` holding the exclusive lock on Networking's state.
    ///
    /// Two threads of one process exclude each other exactly as two processes do, and a killed
    /// holder's lock vanishes with it. Calls do not nest (a nested call throws).
    func withLock<T>(_ body: () throws(NetworkError) -> T) throws(NetworkError) -> T {
        let path = networksDirectory + "/.lock"
        let lock = try NetworkError.from(try FileLock(path))
        defer { lock.unlock() }
        return try body()
    }

    // MARK: Networks

    func networks() throws(NetworkError) -> [NetworkRecord] {
        try entries(networksDirectory).filter { $0.hasSuffix(".json") }.map { (name) throws(NetworkError) in
            try read(NetworkRecord.self, from: "\(networksDirectory)/\(name)")
        }
    }

    func save(_ record: NetworkRecord) throws(NetworkError) {
        try write(record, to: networkPath(record.configuration.id))
    }

    func deleteNetwork(_ id: String) throws(NetworkError) {
        let path = networkPath(id)
        if unlink(path) != 0 && errno != ENOENT { throw NetworkError.system(.io, "remove \(path)") }
    }

    // MARK: Sandboxes

    func sandbox(_ containerID: String) throws(NetworkError) -> Sandbox? {
        let path = sandboxDirectory(containerID) + "/sandbox.json"
        guard access(path, F_OK) == 0 else { return nil }
        return try read(Sandbox.self, from: path)
    }

    func sandboxes() throws(NetworkError) -> [Sandbox] {
        var found: [Sandbox] = []
        for id in try entries(sandboxesDirectory) {
            if let sandbox = try sandbox(id) { found.append(sandbox) }
        }
        return found
    }

    func save(_ sandbox: Sandbox) throws(NetworkError) {
        try write(sandbox, to: sandboxDirectory(sandbox.containerID) + "/sandbox.json")
    }

    /// Deletes a sandbox's directory and the files in it (it has no subdirectories).
    func deleteSandbox(_ containerID: String) throws(NetworkError) {
        let directory = sandboxDirectory(containerID)
        for name in try entries(directory) where unlink("\(directory)/\(name)") != 0 && errno != ENOENT {
            throw NetworkError.system(.io, "remove \(directory)/\(name)")
        }
        if rmdir(directory) != 0 && errno != ENOENT { throw NetworkError.system(.io, "remove \(directory)") }
    }

    // MARK: Files

    /// The names in a directory, without `.`, `..` and hidden files; empty when it is missing.
    func entries(_ directory: String) throws(NetworkError) -> [String] {
        do throws(SystemError) {
            return try directoryEntries(atPath: directory).map(\.name).filter { !$0.hasPrefix(".") }.sorted()
        } catch where error.is(.noSuchFileOrDirectory) {
            return []
        } catch {
            throw NetworkError(error)
        }
    }

    private func read<T: Decodable>(_ type: T.Type, from path: String) throws(NetworkError) -> T {
        let bytes = try NetworkError.from(try readWholeFile(path))
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw NetworkError(code: .io, detail: "read \(path): \(error)")
        }
    }

    /// Writes a file atomically (temporary file, fsync, rename), so a crash leaves the old or the new state.
    private func write<T: Encodable>(_ value: T, to path: String) throws(NetworkError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do { data = try encoder.encode(value) } catch {
            throw NetworkError(code: .io, detail: "encode \(path): \(error)")
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw NetworkError.system(.io, "create directory \(directory)")
        }
        try NetworkError.from(try writeAtomically(path, Array(data)))
    }
}

/// Replaces a file's contents in place (truncate, then write), creating it if missing.
///
/// In place on purpose: the hosts file is bind-mounted into running containers, and a bind
/// mount pins the inode, so a new file renamed over it would never be seen (Docker rewrites
/// its hosts files the same way).
func writeFile(_ path: String, _ bytes: [UInt8], sync: Bool = false) throws(NetworkError) {
    let fd = try NetworkError.from(try sys("open \(path)") { open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) })
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        offset += try NetworkError.from(try sys("write \(path)") {
            bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        })
    }
    if sync { _ = try NetworkError.from(try sys("fsync \(path)") { fsync(fd) }) }
}
