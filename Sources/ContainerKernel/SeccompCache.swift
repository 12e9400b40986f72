import CSeccomp
import Glibc
import Synchronization

/// Compiled seccomp programs, kept in memory and on disk.
///
/// libseccomp needs tens of milliseconds to compile Docker's profile for three architectures,
/// several times what the rest of a container start costs; a command-line tool starting one
/// container per process would pay it every time. So a program is compiled once per profile
/// and stored in a root-only cache directory, keyed by a canonical text of the profile, the
/// libseccomp version and the native architecture. A cached file holds that key text and is
/// used only when it matches byte for byte, so a stale or colliding entry is never loaded.
enum SeccompCache {
    private static let memory = Mutex<[SeccompProfile: SeccompProgram]>([:])
    private static let magic = Array("berth-seccomp-1\n".utf8)

    /// Where compiled programs are kept: `BERTH_CACHE_DIR/seccomp`, else
    /// `/var/cache/berth/seccomp` for root, else `$XDG_CACHE_HOME/berth/seccomp`.
    static var directory: String {
        if let dir = getenv("BERTH_CACHE_DIR").map({ String(cString: $0) }), !dir.isEmpty { return dir + "/seccomp" }
        if getuid() == 0 { return "/var/cache/berth/seccomp" }
        let base = getenv("XDG_CACHE_HOME").map { String(cString: $0) }
            ?? (getenv("HOME").map { String(cString: $0) + "/.cache" } ?? "/tmp")
        return base + "/berth/seccomp"
    }

    /// The compiled program for `profile`, compiling only when neither cache has it.
    static func program(for profile: SeccompProfile) throws(KernelError) -> SeccompProgram {
        if let cached = memory.withLock({ $0[profile] }) { return cached }
        let key = Self.key(for: profile)
        let path = directory + "/" + fnv1a(key) + ".bpf"
        let program: SeccompProgram
        if let stored = load(path, key: key) {
            program = stored
        } else {
            program = try profile.compile()
            store(program, key: key, at: path)
        }
        memory.withLock { $0[profile] = program }
        return program
    }

    private static func key(for profile: SeccompProfile) -> [UInt8] {
        var uts = utsname()
        uname(&uts)
        let machine = withUnsafeBytes(of: uts.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let version = seccomp_version().map { "\($0.pointee.major).\($0.pointee.minor).\($0.pointee.micro)" } ?? "?"
        return Array("libseccomp \(version) \(machine)\n\(canonicalText(profile))".utf8)
    }

    /// The profile as key text: every field in a fixed order, counts before lists and every
    /// string prefixed by its length, so two different profiles never give the same text. A
    /// field added to ``SeccompProfile`` must be added here.
    ///
    /// Not `JSONEncoder`: its dynamic casts scan every protocol conformance of the binary the
    /// first time each type is encoded, which cost a command-line start about a millisecond.
    private static func canonicalText(_ profile: SeccompProfile) -> String {
        var text = ""
        func string(_ value: String) { text += "\(value.utf8.count):\(value) " }
        func number(_ value: UInt64?) { text += value.map { "\($0) " } ?? "- " }
        func count(_ value: Int) { text += "\(value) " }
        string(profile.defaultAction.rawValue)
        number(profile.defaultErrnoRet.map(UInt64.init))
        count(profile.architectures.count)
        profile.architectures.forEach { string($0.rawValue) }
        count(profile.flags.count)
        profile.flags.forEach { string($0.rawValue) }
        count(profile.syscalls.count)
        for rule in profile.syscalls {
            count(rule.names.count)
            rule.names.forEach(string)
            string(rule.action.rawValue)
            number(rule.errnoRet.map(UInt64.init))
            count(rule.args.count)
            for argument in rule.args {
                number(UInt64(argument.index))
                number(argument.value)
                number(argument.valueTwo)
                string(argument.op.rawValue)
            }
        }
        return text
    }

    /// File layout: magic, key length (8 bytes), key, flags (4 bytes), program.
    private static func load(_ path: String, key: [UInt8]) -> SeccompProgram? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_uid == getuid(), st.st_mode & 0o022 == 0, st.st_size < 1 << 20 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        guard read(fd, &bytes, bytes.count) == bytes.count else { return nil }
        let header = magic.count + 8
        guard bytes.count > header, Array(bytes[0..<magic.count]) == magic else { return nil }
        let keyLength = bytes[magic.count..<header].reduce(0) { $0 << 8 | Int($1) }
        let programStart = header + keyLength + 4
        guard keyLength == key.count, bytes.count > programStart, (bytes.count - programStart) % 8 == 0,
              bytes[header..<(header + keyLength)].elementsEqual(key)
        else { return nil }
        let flags = bytes[(header + keyLength)..<programStart].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return SeccompProgram(bytes: Array(bytes[programStart...]), flags: flags)
    }

    /// Best effort: a cache that cannot be written only costs the next process a compile.
    private static func store(_ program: SeccompProgram, key: [UInt8], at path: String) {
        var current = ""
        for component in directory.split(separator: "/") {
            current += "/" + component
            mkdir(current, 0o700)
        }
        let length = UInt64(key.count)
        let contents = magic + (0..<8).reversed().map { UInt8(truncatingIfNeeded: length >> ($0 * 8)) } + key
            + (0..<4).reversed().map { UInt8(truncatingIfNeeded: program.flags >> ($0 * 8)) } + program.bytes
        let temporary = path + ".\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if written != contents.count || rename(temporary, path) != 0 { unlink(temporary) }
    }

    private static func fnv1a(_ bytes: [UInt8]) -> String {
        let hash = bytes.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return String(hash, radix: 16)
    }
}
