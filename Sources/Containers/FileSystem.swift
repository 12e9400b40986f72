import FoundationEssentials
import Glibc

// Small file operations for the runtime's own state (JSON records, hosts files). Records are
// written to a temporary file, fsynced and renamed, so a crash never leaves a torn record.

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
