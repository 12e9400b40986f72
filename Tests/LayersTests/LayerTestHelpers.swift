import Crypto
import Glibc
import Layers
import TestSupport

/// A layer store in a fresh temporary directory, removed (with every snapshot) by `remove`.
struct TestStore {
    let directory: TemporaryDirectory
    let store: LayerStore
    var blobs: String { directory.path + "/blobs" }

    init() throws {
        directory = try TemporaryDirectory(prefix: "layers")
        store = try LayerStore(root: directory.path + "/layers")
        _ = mkdir(directory.path + "/blobs", 0o755)
    }

    /// Writes the entries as a blob and unpacks it.
    func unpack(_ entries: [TarEntry], parent: String? = nil, compressor: String? = nil) async throws -> Layer {
        let path = blobs + "/\(UInt32.random(in: 0...UInt32.max)).tar"
        let diffID = try TarFixture.write(entries, to: path, compressor: compressor)
        let compression: LayerCompression = compressor == "gzip" ? .gzip : compressor == "zstd" ? .zstd : .none
        return try await store.unpack(diffID: diffID, parentChainID: parent, from: .file(path), compression: compression)
    }

    func remove() throws { try directory.remove() }
}

/// A description of one file system object, for comparing trees.
struct Node: Hashable, CustomStringConvertible {
    var type: String
    var mode: UInt32
    var uid: UInt32
    var gid: UInt32
    /// File content, link target or device numbers.
    var data: String
    var xattrs: [String: [UInt8]]

    var description: String {
        "\(type) \(String(mode, radix: 8)) \(uid):\(gid) \(data.prefix(40)) \(xattrs.keys.sorted())"
    }
}

/// Every object below `root` (not `root` itself), by relative path, without following links.
/// `trusted.overlay.*` xattrs are left out: they are overlay's bookkeeping.
func captureTree(_ root: String) -> [String: Node] {
    var result: [String: Node] = [:]
    func visit(_ relative: String) {
        let path = relative.isEmpty ? root : root + "/" + relative
        guard let dir = opendir(path) else { return }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names {
            let child = relative.isEmpty ? name : relative + "/" + name
            var st = stat()
            guard lstat(root + "/" + child, &st) == 0 else { continue }
            let xattrs = listXattrs(root + "/" + child).filter { !$0.key.hasPrefix("trusted.overlay.") }
            var node = Node(type: "?", mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, data: "",
                            xattrs: xattrs)
            switch st.st_mode & S_IFMT {
            case S_IFDIR: node.type = "dir"
            case S_IFREG:
                node.type = "file"
                node.data = String(decoding: readAll(root + "/" + child), as: UTF8.self)
            case S_IFLNK:
                node.type = "symlink"
                node.mode = 0
                var buffer = [CChar](repeating: 0, count: 4097)
                let n = readlink(root + "/" + child, &buffer, 4096)
                node.data = String(decoding: buffer[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            case S_IFCHR:
                node.type = "char"
                node.data = "\(major(st.st_rdev)),\(minor(st.st_rdev))"
            case S_IFBLK:
                node.type = "block"
                node.data = "\(major(st.st_rdev)),\(minor(st.st_rdev))"
            case S_IFIFO: node.type = "fifo"
            default: node.type = "other"
            }
            result[child] = node
            if node.type == "dir" { visit(child) }
        }
    }
    visit("")
    return result
}

func readAll(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return result }
        result += buffer[0..<n]
    }
}

/// The xattrs of a path (not following a final symlink), read with the `getfattr` tool so the
/// oracle does not share code with the library.
func listXattrs(_ path: String) -> [String: [UInt8]] {
    guard let output = try? run(["getfattr", "-h", "-d", "-m", "-", "-e", "hex", "--absolute-names", path]) else {
        return [:]
    }
    var result: [String: [UInt8]] = [:]
    for line in output.split(separator: "\n") where !line.hasPrefix("#") {
        guard let eq = line.firstIndex(of: "=") else { continue }
        let key = String(line[..<eq])
        var hex = Array(line[line.index(after: eq)...].dropFirst(2).utf8)
        var bytes: [UInt8] = []
        while hex.count >= 2 {
            bytes.append(UInt8(String(decoding: hex.prefix(2), as: UTF8.self), radix: 16) ?? 0)
            hex.removeFirst(2)
        }
        result[key] = bytes
    }
    return result
}

/// Runs a tool and returns its standard output; throws when it fails.
@discardableResult
func run(_ argv: [String]) throws -> String {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw TestSupportError("pipe") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    let cArgs = argv.map { strdup($0) }
    defer { cArgs.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs + [nil], environ)
    close(fds[1])
    defer { close(fds[0]) }
    guard rc == 0 else { throw TestSupportError("spawn \(argv[0]): \(rc)") }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n <= 0 { break }
        output += buffer[0..<n]
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    guard status == 0 else { throw TestSupportError("\(argv.joined(separator: " ")) failed: status \(status)") }
    return String(decoding: output, as: UTF8.self)
}

func major(_ dev: UInt) -> UInt32 { UInt32((dev >> 8) & 0xfff) | UInt32((dev >> 32) & ~0xfff) }
func minor(_ dev: UInt) -> UInt32 { UInt32(dev & 0xff) | UInt32((dev >> 12) & ~0xff) }

/// Whether anything exists at `path` (without following a final symlink).
func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}
