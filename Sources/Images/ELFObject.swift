import Glibc
import SystemSupport

/// What the dynamic loader needs to know of an ELF executable or shared object, read from its
/// headers with a few `pread`s (never the whole file): its class and machine, its interpreter
/// (`PT_INTERP`), the libraries it needs (`DT_NEEDED`) and where it says to look for them
/// (`DT_RPATH`, `DT_RUNPATH`).
struct ELFObject: Equatable {
    /// 32- or 64-bit (`EI_CLASS`: 1 or 2).
    var elfClass: UInt8
    /// The architecture (`e_machine`: 62 is x86-64, 183 AArch64).
    var machine: UInt16
    /// The dynamic loader `PT_INTERP` names; nil for a static executable or a library.
    var interpreter: String?
    /// The `DT_NEEDED` names, in order.
    var needed: [String] = []
    /// The `DT_RPATH` directories, which ld.so only honours without a `DT_RUNPATH`.
    var rpath: [String] = []
    /// The `DT_RUNPATH` directories.
    var runpath: [String] = []

    private static let headerSize = 64
    private static let (ptLoad, ptDynamic, ptInterp): (UInt32, UInt32, UInt32) = (1, 2, 3)
    private static let (dtNull, dtNeeded, dtStrtab, dtStrsz, dtRpath, dtRunpath): (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 1, 5, 10, 15, 29)

    /// Whether the file at `path` starts with the ELF magic (false when it cannot be read).
    static func isELF(_ path: String) -> Bool {
        guard let file = try? OwnedFD(opening: path, flags: O_RDONLY),
              let head = try? readBytes(file, at: 0, count: 4, path: path) else { return false }
        return head == [0x7F, 0x45, 0x4C, 0x46]
    }

    /// Reads the headers of the ELF file at `path`.
    ///
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` when `path` does not
    ///   exist, ``ImageError/Code/invalidContent`` when it is not an ELF file or its headers
    ///   point outside it, ``ImageError/Code/io`` when a read fails.
    init(reading path: String) throws(ImageError) {
        var reader = try Reader(file: try ImageError.from(try OwnedFD(opening: path, flags: O_RDONLY)), path: path)
        let header = try reader.read(at: 0, count: Self.headerSize)
        guard header.count >= 52, header[0..<4] == [0x7F, 0x45, 0x4C, 0x46] else {
            throw ImageError(code: .invalidContent, detail: "\(path) is not an ELF file")
        }
        guard header[4] == 1 || header[4] == 2, header[5] == 1 || header[5] == 2 else {
            throw ImageError(code: .invalidContent, detail: "\(path): unknown ELF class \(header[4]) or byte order \(header[5])")
        }
        elfClass = header[4]
        reader.bigEndian = header[5] == 2
        reader.wide = elfClass == 2
        let wide = reader.wide
        guard header.count >= (wide ? 64 : 52) else { throw ImageError(code: .invalidContent, detail: "\(path): truncated ELF header") }
        machine = UInt16(truncatingIfNeeded: reader.integer(header, at: 18, size: 2))
        let phoff = Int(reader.integer(header, at: wide ? 32 : 28, size: wide ? 8 : 4))
        let phentsize = Int(reader.integer(header, at: wide ? 54 : 42, size: 2))
        let phnum = Int(reader.integer(header, at: wide ? 56 : 44, size: 2))
        guard phentsize >= (wide ? 56 : 32) || phnum == 0 else {
            throw ImageError(code: .invalidContent, detail: "\(path): program header entries of \(phentsize) bytes")
        }
        let table = try reader.read(at: phoff, count: phentsize * phnum, exactly: true)

        // (vaddr, offset, filesz) of each PT_LOAD, to turn DT_STRTAB's address into an offset.
        var loads: [(vaddr: UInt64, offset: UInt64, size: UInt64)] = []
        var dynamic: (offset: Int, size: Int)?
        for index in 0..<phnum {
            let at = index * phentsize
            let type = UInt32(truncatingIfNeeded: reader.integer(table, at: at, size: 4))
            let offset = reader.integer(table, at: at + (wide ? 8 : 4), size: wide ? 8 : 4)
            let vaddr = reader.integer(table, at: at + (wide ? 16 : 8), size: wide ? 8 : 4)
            let filesz = reader.integer(table, at: at + (wide ? 32 : 16), size: wide ? 8 : 4)
            switch type {
            case Self.ptLoad: loads.append((vaddr, offset, filesz))
            case Self.ptDynamic: dynamic = (Int(offset), Int(filesz))
            case Self.ptInterp:
                let bytes = try reader.read(at: Int(offset), count: Int(filesz), exactly: true)
                interpreter = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            default: break
            }
        }
        guard let dynamic else { return }

        let entrySize = wide ? 16 : 8
        let entries = try reader.read(at: dynamic.offset, count: dynamic.size, exactly: true)
        var strtab: UInt64?
        var strsz = 0
        var tags: [(tag: UInt64, value: UInt64)] = []
        for at in stride(from: 0, to: entries.count - entrySize + 1, by: entrySize) {
            let tag = reader.integer(entries, at: at, size: entrySize / 2)
            let value = reader.integer(entries, at: at + entrySize / 2, size: entrySize / 2)
            if tag == Self.dtNull { break }
            switch tag {
            case Self.dtStrtab: strtab = value
            case Self.dtStrsz: strsz = Int(value)
            case Self.dtNeeded, Self.dtRpath, Self.dtRunpath: tags.append((tag, value))
            default: break
            }
        }
        guard !tags.isEmpty else { return }
        guard let strtab, let load = loads.first(where: { $0.vaddr <= strtab && strtab < $0.vaddr + $0.size }) else {
            throw ImageError(code: .invalidContent, detail: "\(path): its string table is in no loaded segment")
        }
        let strings = try reader.read(at: Int(strtab - load.vaddr + load.offset), count: strsz, exactly: true)
        for (tag, value) in tags {
            guard Int(value) < strings.count else {
                throw ImageError(code: .invalidContent, detail: "\(path): a dynamic entry points past the string table")
            }
            let string = String(decoding: strings[Int(value)...].prefix { $0 != 0 }, as: UTF8.self)
            switch tag {
            case Self.dtNeeded: needed.append(string)
            case Self.dtRpath: rpath += string.split(separator: ":").map(String.init)
            default: runpath += string.split(separator: ":").map(String.init)
            }
        }
    }

    /// Reads a file's bytes and decodes its integers in the file's byte order.
    private struct Reader {
        let file: OwnedFD
        let path: String
        let size: Int
        var bigEndian = false
        var wide = true

        init(file: OwnedFD, path: String) throws(ImageError) {
            var st = stat()
            guard fstat(file.raw, &st) == 0 else { throw ImageError.io("stat \(path)") }
            self.file = file
            self.path = path
            size = Int(st.st_size)
        }

        /// `count` bytes at `offset`; with `exactly`, all of them or an error.
        func read(at offset: Int, count: Int, exactly: Bool = false) throws(ImageError) -> [UInt8] {
            guard offset >= 0, count >= 0, !exactly || offset <= size - count else {
                throw ImageError(code: .invalidContent, detail: "\(path): headers point past the end of the file")
            }
            return try ImageError.from(try readBytes(file, at: offset, count: count, path: path))
        }

        /// The unsigned integer of `size` bytes at `at` in `bytes`.
        func integer(_ bytes: [UInt8], at: Int, size: Int) -> UInt64 {
            var value: UInt64 = 0
            for index in 0..<size {
                let byte = UInt64(bytes[at + (bigEndian ? index : size - 1 - index)])
                value = value << 8 | byte
            }
            return value
        }
    }
}
