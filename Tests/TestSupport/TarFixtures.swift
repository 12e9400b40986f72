// Tar archives written entry by entry for the Layers tests, including hostile ones (`../`
// names, links out of the root) that well-behaved archivers refuse to produce. The writer is
// plain Swift, independent of the libarchive code under test: every entry gets a pax header
// (path, link path, SCHILY.xattr.*) followed by a ustar header, as POSIX pax (IEEE 1003.1-2001)
// lays them out.

import Crypto
import Glibc

/// One entry of a test tar archive.
public struct TarEntry: Sendable, Hashable {
    /// What the entry is.
    public enum Kind: Sendable, Hashable {
        case file([UInt8])
        case directory
        case symlink(String)
        case hardlink(String)
        case characterDevice(major: UInt32, minor: UInt32)
        case blockDevice(major: UInt32, minor: UInt32)
        case fifo
    }

    /// The name stored in the archive, verbatim (it may be hostile).
    public var name: String
    public var kind: Kind
    /// Permission bits (including set-id and sticky bits).
    public var mode: UInt32
    public var uid: Int
    public var gid: Int
    /// Seconds since the epoch.
    public var mtime: Int
    public var xattrs: [String: [UInt8]]

    /// Creates an entry.
    public init(_ name: String, _ kind: Kind, mode: UInt32? = nil, uid: Int = 0, gid: Int = 0,
                mtime: Int = 1_700_000_000, xattrs: [String: [UInt8]] = [:])
    {
        self.name = name
        self.kind = kind
        if let mode {
            self.mode = mode
        } else if case .directory = kind {
            self.mode = 0o755
        } else if case .symlink = kind {
            self.mode = 0o777
        } else {
            self.mode = 0o644
        }
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
        self.xattrs = xattrs
    }

    /// A regular file with text content.
    public static func file(_ name: String, _ text: String, mode: UInt32 = 0o644, uid: Int = 0, gid: Int = 0,
                            xattrs: [String: [UInt8]] = [:]) -> TarEntry
    {
        TarEntry(name, .file(Array(text.utf8)), mode: mode, uid: uid, gid: gid, xattrs: xattrs)
    }

    /// A regular file with these bytes.
    public static func file(_ name: String, bytes: [UInt8], mode: UInt32 = 0o644) -> TarEntry {
        TarEntry(name, .file(bytes), mode: mode)
    }

    /// A directory.
    public static func directory(_ name: String, mode: UInt32 = 0o755, uid: Int = 0, gid: Int = 0) -> TarEntry {
        TarEntry(name, .directory, mode: mode, uid: uid, gid: gid)
    }

    /// A symbolic link.
    public static func symlink(_ name: String, to target: String) -> TarEntry {
        TarEntry(name, .symlink(target))
    }

    /// A hard link to an earlier entry.
    public static func hardlink(_ name: String, to target: String) -> TarEntry {
        TarEntry(name, .hardlink(target))
    }

    /// An OCI whiteout for `path` (`dir/.wh.name`).
    public static func whiteout(_ path: String) -> TarEntry {
        let slash = path.lastIndex(of: "/")
        let parent = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        return TarEntry(parent + ".wh." + name, .file([]), mode: 0)
    }

    /// An OCI opaque-directory marker for `directory`.
    public static func opaque(_ directory: String) -> TarEntry {
        TarEntry(directory + "/.wh..wh..opq", .file([]), mode: 0)
    }
}

/// Builds tar archives from ``TarEntry`` lists.
public enum TarFixture {
    /// The uncompressed archive.
    public static func archive(_ entries: [TarEntry]) -> [UInt8] {
        var out: [UInt8] = []
        for entry in entries {
            var records: [(String, [UInt8])] = [("path", Array(entry.name.utf8))]
            if case .symlink(let target) = entry.kind { records.append(("linkpath", Array(target.utf8))) }
            if case .hardlink(let target) = entry.kind { records.append(("linkpath", Array(target.utf8))) }
            for (key, value) in entry.xattrs.sorted(by: { $0.key < $1.key }) {
                records.append(("SCHILY.xattr." + key, value))
            }
            let pax = records.flatMap(paxRecord)
            out += header(name: "PaxHeaders/entry", type: "x", mode: 0o644, size: pax.count, entry: nil)
            out += padded(pax)

            var type: Character = "0"
            var size = 0
            var device: (UInt32, UInt32) = (0, 0)
            switch entry.kind {
            case .file(let bytes): size = bytes.count
            case .directory: type = "5"
            case .symlink: type = "2"
            case .hardlink: type = "1"
            case .characterDevice(let major, let minor):
                type = "3"
                device = (major, minor)
            case .blockDevice(let major, let minor):
                type = "4"
                device = (major, minor)
            case .fifo: type = "6"
            }
            out += header(name: String(entry.name.prefix(99)), type: type, mode: entry.mode, size: size, entry: entry,
                          device: device)
            if case .file(let bytes) = entry.kind { out += padded(bytes) }
        }
        return out + [UInt8](repeating: 0, count: 1024)
    }

    /// Writes the archive to `path`, compressed with the `gzip` or `zstd` program when asked.
    ///
    /// - Parameters:
    ///   - entries: The entries.
    ///   - path: Where the (compressed) archive goes.
    ///   - compressor: `nil`, `"gzip"` or `"zstd"`.
    /// - Returns: The `sha256:` digest of the uncompressed archive (its diff ID).
    @discardableResult
    public static func write(_ entries: [TarEntry], to path: String, compressor: String? = nil) throws -> String {
        let bytes = archive(entries)
        let plain = compressor == nil ? path : path + ".plain"
        try writeBytes(bytes, to: plain)
        if let compressor {
            let result = try runProgram(["sh", "-c", "\(compressor) -c < '\(plain)' > '\(path)' && rm '\(plain)'"])
            guard result.status == 0 else { throw TestSupportError("\(compressor) \(plain): \(result.output)") }
        }
        return sha256(bytes)
    }

    /// `sha256:<hex>` of some bytes.
    public static func sha256(_ bytes: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: bytes).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    private static func paxRecord(_ record: (String, [UInt8])) -> [UInt8] {
        // "<length> <key>=<value>\n", where length counts itself.
        let body = Array(" \(record.0)=".utf8) + record.1 + [UInt8(ascii: "\n")]
        var length = body.count + 1
        while String(length).utf8.count + body.count != length { length += 1 }
        return Array(String(length).utf8) + body
    }

    private static func padded(_ bytes: [UInt8]) -> [UInt8] {
        bytes + [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
    }

    private static func header(name: String, type: Character, mode: UInt32, size: Int, entry: TarEntry?,
                               device: (UInt32, UInt32) = (0, 0)) -> [UInt8]
    {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, width: Int) {
            for (i, byte) in text.utf8.prefix(width).enumerated() { block[offset + i] = byte }
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            let text = String(value, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - text.count)) + text, at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(Int(mode), at: 100, width: 8)
        octal(entry?.uid ?? 0, at: 108, width: 8)
        octal(entry?.gid ?? 0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(entry?.mtime ?? 0, at: 136, width: 12)
        put(String(type), at: 156, width: 1)
        if let entry {
            switch entry.kind {
            case .symlink(let target), .hardlink(let target): put(target, at: 157, width: 100)
            default: break
            }
        }
        put("ustar", at: 257, width: 6)
        put("00", at: 263, width: 2)
        octal(Int(device.0), at: 329, width: 8)
        octal(Int(device.1), at: 337, width: 8)
        put("        ", at: 148, width: 8)
        let checksum = block.reduce(0) { $0 + Int($1) }
        octal(checksum, at: 148, width: 7)
        return block
    }
}

/// Writes bytes to a new file (mode 0644), replacing it.
public func writeBytes(_ bytes: [UInt8], to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw TestSupportError.errno("create \(path)") }
    defer { close(fd) }
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress.map { $0 + written }, bytes.count - written) }
        guard n > 0 else { throw TestSupportError.errno("write \(path)") }
        written += n
    }
}
