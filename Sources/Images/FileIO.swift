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
}
