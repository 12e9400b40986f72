import FoundationEssentials
import Glibc

// Small file operations for the runtime's own state (JSON records, hosts files). Records are
// written to a temporary file, fsynced and renamed, so a crash never leaves a torn record.

func makeDirectory(_ path: String, mode: mode_t = 0o711) throws(ContainerError) {
    var current = ""
    for component in path.split(separator: "/") {
        current += "/" + component
        if mkdir(current, mode) != 0 && errno != EEXIST {
            throw ContainerError(code: .io, detail: "mkdir \(current): \(String(cString: strerror(errno)))")
        }
    }
}

func listDirectory(_ path: String) throws(ContainerError) -> [String] {
    guard let dir = opendir(path) else {
        throw ContainerError(code: .io, detail: "open \(path): \(String(cString: strerror(errno)))")
    }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

func readTextFile(_ path: String) throws(ContainerError) -> String {
    String(decoding: try readBytes(path), as: UTF8.self)
}

func readBytes(_ path: String) throws(ContainerError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ContainerError(code: .io, detail: "open \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw ContainerError(code: .io, detail: "read \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { return result }
        result += buffer[0..<n]
    }
}

/// Replaces `path` with `bytes` through a temporary file and `rename`, so readers (in any
/// process) see the old file or the new one, never a part.
///
/// `durable` adds an `fsync` before the rename, so the new contents also survive a power loss.
/// A container's state and its `/etc` files need not: every container is gone after a reboot,
/// and the record is only ever read by runtimes of the same boot. At 2–7 ms an `fsync` on a
/// busy disk, seven of them were the largest part of a container's start.
func writeAtomically(_ path: String, _ bytes: [UInt8], durable: Bool = true) throws(ContainerError) {
    let temporary = path + ".tmp-\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw ContainerError(code: .io, detail: "create \(temporary): \(String(cString: strerror(errno)))") }
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress.map { $0 + offset }, $0.count - offset) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            close(fd)
            unlink(temporary)
            throw ContainerError(code: .io, detail: "write \(temporary): \(String(cString: strerror(errno)))")
        }
        offset += n
    }
    if durable { fsync(fd) }
    close(fd)
    guard rename(temporary, path) == 0 else {
        unlink(temporary)
        throw ContainerError(code: .io, detail: "rename \(temporary): \(String(cString: strerror(errno)))")
    }
}

/// Removes a directory tree without following symlinks and without crossing into mounts
/// (a mount still inside is an error, never something to delete through).
func removeTree(_ path: String) throws(ContainerError) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for name in try listDirectory(path) {
            var child = stat()
            let full = path + "/" + name
            if lstat(full, &child) == 0 && child.st_dev != st.st_dev {
                throw ContainerError(code: .io, detail: "remove \(full): a mount is still there")
            }
            try removeTree(full)
        }
        guard rmdir(path) == 0 else { throw ContainerError(code: .io, detail: "rmdir \(path): \(String(cString: strerror(errno)))") }
    } else if unlink(path) != 0 {
        throw ContainerError(code: .io, detail: "unlink \(path): \(String(cString: strerror(errno)))")
    }
}

let jsonEncoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    return encoder
}()

let jsonDecoder: JSONDecoder = {
    let decoder = JSONDecoder()
    decoder.dateDecodingStrategy = .iso8601
    return decoder
}()
