import CSyscalls

/// The xattrs of a file as name → value: of the open `fd`, or of `path` without following a
/// final symlink when `fd` is `nil`. Empty where the file system has no xattrs.
func readXattrs(fd: Int32?, path: String) -> [String: [UInt8]] {
    func list(_ buffer: UnsafeMutablePointer<CChar>?, _ size: Int) -> Int {
        if let fd { return ck_flistxattr(fd, buffer, size) }
        return ck_llistxattr(path, buffer, size)
    }
    func get(_ name: UnsafePointer<CChar>, _ buffer: UnsafeMutableRawPointer?, _ size: Int) -> Int {
        if let fd { return ck_fgetxattr(fd, name, buffer, size) }
        return ck_lgetxattr(path, name, buffer, size)
    }
    let length = list(nil, 0)
    guard length > 0 else { return [:] }
    var names = [CChar](repeating: 0, count: length)
    let got = names.withUnsafeMutableBufferPointer { list($0.baseAddress, length) }
    guard got > 0 else { return [:] }
    var result: [String: [UInt8]] = [:]
    for rawName in names[..<got].split(separator: 0) {
        let name = String(decoding: rawName.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let size = name.withCString { get($0, nil, 0) }
        guard size >= 0 else { continue }
        var value = [UInt8](repeating: 0, count: size)
        let read = name.withCString { key in value.withUnsafeMutableBytes { get(key, $0.baseAddress, size) } }
        if read >= 0 { result[name] = Array(value[..<read]) }
    }
    return result
}
