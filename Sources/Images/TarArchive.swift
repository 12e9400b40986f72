import FoundationEssentials
import Glibc
import SystemSupport

// The tar container of `oci-archive` and `docker-archive` files. Those archives hold only
// directories and regular files with short names, so a small ustar writer and a reader that
// understands ustar, pax (`path`, `size`) and GNU long names are enough; layer tars inside them
// are copied as opaque files and never interpreted here (Layers unpacks those with libarchive).

/// Writes a ustar archive to a file descriptor, one regular file at a time.
struct TarWriter {
    private let fd: Int32
    private let path: String

    /// - Parameters:
    ///   - fd: Where the archive goes; not closed.
    ///   - path: The archive's name, for error messages.
    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Adds a file with the given bytes.
    func add(_ name: String, bytes: [UInt8]) throws(ImageError) {
        try writeHeader(name, size: Int64(bytes.count))
        try FileIO.withBytes(bytes) { (buffer) throws(ImageError) in try ImageError.from(try writeAll(fd, buffer, path: path)) }
        try pad(Int64(bytes.count))
    }

    /// Adds a file whose content is read from `source`, 1 MiB at a time.
    func add(_ name: String, copying source: String) throws(ImageError) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw ImageError.io("open \(source)") }
        defer { close(input) }
        var st = stat()
        guard fstat(input, &st) == 0 else { throw ImageError.io("stat \(source)") }
        let size = Int64(st.st_size)
        try writeHeader(name, size: size)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var copied: Int64 = 0
        while copied < size {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, min($0.count, Int(size - copied))) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError.io("read \(source)") }
            if n == 0 { throw ImageError(code: .io, detail: "\(source) shrank while it was archived") }
            try FileIO.withBytes(buffer, 0..<n) { (bytes) throws(ImageError) in try ImageError.from(try writeAll(fd, bytes, path: path)) }
            copied += Int64(n)
        }
        try pad(size)
    }

    /// Writes the two zero blocks that end an archive.
    func finish() throws(ImageError) {
        try FileIO.withBytes([UInt8](repeating: 0, count: 1024)) { (bytes) throws(ImageError) in
            try ImageError.from(try writeAll(fd, bytes, path: path))
        }
    }

    private func writeHeader(_ name: String, size: Int64) throws(ImageError) {
        let bytes = Array(name.utf8)
        // ustar splits a long name at a '/' into prefix (155 bytes) and name (100 bytes).
        var prefix: [UInt8] = []
        var short = bytes
        if bytes.count > 100 {
            guard let slash = bytes.indices.last(where: { bytes[$0] == UInt8(ascii: "/") && $0 <= 155 && bytes.count - $0 - 1 <= 100 }) else {
                throw ImageError(code: .invalidArgument, detail: "archive entry name \"\(name)\" is too long for ustar")
            }
            prefix = Array(bytes[..<slash])
            short = Array(bytes[(slash + 1)...])
        }
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ field: [UInt8], at offset: Int) {
            for (i, byte) in field.enumerated() { header[offset + i] = byte }
        }
        func octal(_ value: Int64, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put(Array((String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits).utf8), at: offset)
        }
        put(short, at: 0)
        octal(0o644, at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(0, at: 136, width: 12)
        put(Array("        ".utf8), at: 148)
        header[156] = UInt8(ascii: "0")
        put(Array("ustar\u{0}00".utf8), at: 257)
        put(prefix, at: 345)
        octal(Int64(header.reduce(0) { $0 + Int($1) }), at: 148, width: 7)
        header[155] = UInt8(ascii: " ")
        try FileIO.withBytes(header) { (bytes) throws(ImageError) in try ImageError.from(try writeAll(fd, bytes, path: path)) }
    }

    private func pad(_ size: Int64) throws(ImageError) {
        let padding = Int((512 - size % 512) % 512)
        guard padding > 0 else { return }
        try FileIO.withBytes([UInt8](repeating: 0, count: padding)) { (bytes) throws(ImageError) in
            try ImageError.from(try writeAll(fd, bytes, path: path))
        }
    }
}

/// Extracts the directories and regular files of an archive into an empty directory.
enum TarExtractor {
    /// Extracts `archive` into `directory`.
    ///
    /// Only directories and regular files are created; links, devices and other entries are
    /// skipped, so nothing can point outside `directory`. Names that are absolute or contain
    /// `..` are refused.
    ///
    /// - Throws: ``ImageError/Code/invalidContent`` for a malformed archive or a hostile name.
    static func extract(_ archive: String, into directory: String) throws(ImageError) {
        let fd = open(archive, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw errno == ENOENT ? ImageError(code: .notFound, detail: "\(archive) does not exist") : .io("open \(archive)")
        }
        defer { close(fd) }
        var longName: String?
        var paxPath: String?
        var paxSize: Int64?
        while true {
            let header = try readExactly(fd, 512, archive: archive)
            if header.allSatisfy({ $0 == 0 }) { return }
            guard let size = paxSize ?? number(header[124..<136]) else {
                throw ImageError(code: .invalidContent, detail: "\(archive) is not a tar archive (bad size field)")
            }
            let type = header[156]
            var name = longName ?? paxPath ?? ustarName(header)
            longName = nil
            paxPath = nil
            paxSize = nil
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "L"):
                let content = try readExactly(fd, Int(size), archive: archive)
                try skip(fd, padding(size), archive: archive)
                if type == UInt8(ascii: "L") {
                    longName = String(decoding: content.prefix { $0 != 0 }, as: UTF8.self)
                } else {
                    (paxPath, paxSize) = parsePax(content)
                }
                continue
            case UInt8(ascii: "0"), 0, UInt8(ascii: "5"):
                if name.hasPrefix("./") { name.removeFirst(2) }
                while name.hasSuffix("/") { name.removeLast() }
                if name.isEmpty || name == "." {
                    try skip(fd, size + padding(size), archive: archive)
                    continue
                }
                let components = name.split(separator: "/")
                guard !name.hasPrefix("/"), !components.contains("..") else {
                    throw ImageError(code: .invalidContent, detail: "\(archive): entry \"\(name)\" points outside the archive")
                }
                let target = directory + "/" + components.joined(separator: "/")
                if type == UInt8(ascii: "5") {
                    try ImageError.from(try makeDirectories(target, mode: 0o755))
                    try skip(fd, size + padding(size), archive: archive)
                } else {
                    try ImageError.from(try makeDirectories(target.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/"), mode: 0o755))
                    try copy(fd, size, to: target, archive: archive)
                    try skip(fd, padding(size), archive: archive)
                }
            default:
                try skip(fd, size + padding(size), archive: archive)
            }
        }
    }

    private static func ustarName(_ header: [UInt8]) -> String {
        let name = String(decoding: header[0..<100].prefix { $0 != 0 }, as: UTF8.self)
        let isUstar = header[257..<262].elementsEqual("ustar".utf8)
        let prefix = isUstar ? String(decoding: header[345..<500].prefix { $0 != 0 }, as: UTF8.self) : ""
        return prefix.isEmpty ? name : prefix + "/" + name
    }

    /// An octal field, or GNU's base-256 form (high bit of the first byte set).
    private static func number(_ field: ArraySlice<UInt8>) -> Int64? {
        if let first = field.first, first & 0x80 != 0 {
            return field.dropFirst().reduce(Int64(first & 0x7f)) { ($0 << 8) | Int64($1) }
        }
        let text = String(decoding: field.prefix { $0 != 0 && $0 != UInt8(ascii: " ") }, as: UTF8.self)
        return text.isEmpty ? 0 : Int64(text, radix: 8)
    }

    /// `path` and `size` from pax records (`<length> <key>=<value>\n`).
    private static func parsePax(_ content: [UInt8]) -> (path: String?, size: Int64?) {
        var path: String?
        var size: Int64?
        for record in String(decoding: content, as: UTF8.self).split(separator: "\n") {
            guard let space = record.firstIndex(of: " "), let equals = record.firstIndex(of: "=") else { continue }
            let key = record[record.index(after: space)..<equals]
            let value = String(record[record.index(after: equals)...])
            if key == "path" { path = value }
            if key == "size" { size = Int64(value) }
        }
        return (path, size)
    }

    private static func padding(_ size: Int64) -> Int64 { (512 - size % 512) % 512 }

    private static func readExactly(_ fd: Int32, _ count: Int, archive: String) throws(ImageError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress.map { $0 + done }, count - done) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError.io("read \(archive)") }
            if n == 0 { throw ImageError(code: .invalidContent, detail: "\(archive) ends in the middle of an entry") }
            done += n
        }
        return bytes
    }

    private static func skip(_ fd: Int32, _ count: Int64, archive: String) throws(ImageError) {
        guard count > 0 else { return }
        if lseek(fd, off_t(count), SEEK_CUR) >= 0 { return }
        // Pipes cannot seek: read and drop.
        var left = count
        while left > 0 {
            let chunk = try readExactly(fd, Int(min(left, 1 << 20)), archive: archive)
            left -= Int64(chunk.count)
        }
    }

    private static func copy(_ fd: Int32, _ size: Int64, to target: String, archive: String) throws(ImageError) {
        let output = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw ImageError.io("create \(target)") }
        defer { close(output) }
        var left = size
        while left > 0 {
            let chunk = try readExactly(fd, Int(min(left, 1 << 20)), archive: archive)
            try FileIO.withBytes(chunk) { (bytes) throws(ImageError) in try ImageError.from(try writeAll(output, bytes, path: target)) }
            left -= Int64(chunk.count)
        }
    }
}
