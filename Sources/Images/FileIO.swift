import Glibc

/// Small file helpers over Glibc, each turning failure into ``ImageError/Code/io`` naming the path.
enum FileIO {
    /// `withUnsafeBytes` that keeps the typed error (the standard library's version rethrows `any Error`).
    static func withBytes<R>(
        _ bytes: [UInt8], _ range: Range<Int>? = nil, _ body: (UnsafeRawBufferPointer) throws(ImageError) -> R
    ) throws(ImageError) -> R {
        let result: Result<R, ImageError> = bytes.withUnsafeBytes { buffer in
            let slice = range.map { UnsafeRawBufferPointer(rebasing: buffer[$0]) } ?? buffer
            do throws(ImageError) { return .success(try body(slice)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func size(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func read(_ path: String) throws(ImageError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw errno == ENOENT ? ImageError(code: .notFound, detail: "\(path) does not exist") : .io("open \(path)")
        }
        defer { close(fd) }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw ImageError.io("read \(path)") }
            if n == 0 { return result }
            result.append(contentsOf: buffer[0..<n])
        }
    }

    /// The names in a directory, without `.` and `..`; empty if it cannot be read.
    static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
