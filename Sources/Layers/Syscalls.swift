// System calls glibc 2.36 (Debian 12) has no wrapper for: openat2(2) and the new mount API
// (fsopen/fsconfig/fsmount/move_mount). Swift cannot call the variadic syscall(3), and this
// target has no C shim of its own, so syscall(3) is looked up once and called through a
// fixed-arity C function type. That is sound on the ABIs Berth runs on (x86-64 and AArch64
// Linux): glibc implements syscall(3) in assembly that only moves integer registers (and the
// seventh argument from the same stack slot), so a variadic and a fixed-arity call pass the
// same bits. A `ck_syscall` wrapper in a C target would remove the need for this.

import Glibc

private typealias RawSyscall = @convention(c) (Int, Int, Int, Int, Int, Int, Int) -> Int

private let rawSyscall: RawSyscall? = dlsym(nil, "syscall").map { unsafeBitCast($0, to: RawSyscall.self) }

/// Calls system call `number`; returns its result, or `-1` with `errno` set.
func syscall6(_ number: Int, _ a: Int = 0, _ b: Int = 0, _ c: Int = 0, _ d: Int = 0, _ e: Int = 0, _ f: Int = 0)
    -> Int
{
    guard let rawSyscall else {
        Glibc.errno = ENOSYS
        return -1
    }
    return rawSyscall(number, a, b, c, d, e, f)
}

// Syscall numbers from 424 on are the same on every architecture (the kernel's unified table).
let SYS_move_mount = 429
let SYS_fsopen = 430
let SYS_fsconfig = 431
let SYS_fsmount = 432
let SYS_openat2 = 437
// Below 424 the numbers are the architecture's; Swift's Glibc module has no SYS_fstatfs.
#if arch(arm64)
let SYS_fstatfs = 44
#else
let SYS_fstatfs = 138
#endif

/// `struct open_how` of openat2(2).
struct OpenHow {
    var flags: UInt64
    var mode: UInt64
    var resolve: UInt64
}

/// Resolve flags of openat2(2) (linux/openat2.h).
enum Resolve {
    /// Fail on `/proc/<pid>/fd`-style magic links (`RESOLVE_NO_MAGICLINKS`).
    static let noMagicLinks: UInt64 = 0x02
    /// Treat the dirfd as `/` for `..`, absolute paths and symlinks (`RESOLVE_IN_ROOT`).
    static let inRoot: UInt64 = 0x10
}

/// openat2(2): opens `path` relative to `dirfd` with `how`; returns the fd or `-1`.
///
/// `EAGAIN` is retried: with `RESOLVE_IN_ROOT` the kernel gives up on a `..` when a rename or a
/// mount anywhere on the system raced with the lookup, and openat2(2) says to retry.
func openat2(_ dirfd: Int32, _ path: String, flags: Int32, mode: UInt32 = 0, resolve: UInt64) -> Int32 {
    var how = OpenHow(flags: UInt64(UInt32(bitPattern: flags)), mode: UInt64(mode), resolve: resolve)
    return path.withCString { cPath in
        withUnsafeMutablePointer(to: &how) { howPointer in
            var attempts = 0
            while true {
                let fd = Int32(truncatingIfNeeded: syscall6(
                    SYS_openat2, Int(dirfd), Int(bitPattern: cPath), Int(bitPattern: howPointer),
                    MemoryLayout<OpenHow>.size))
                attempts += 1
                // Bounded, so that a machine busy with mounts fails the lookup instead of spinning.
                guard fd < 0, Glibc.errno == EAGAIN || Glibc.errno == EINTR, attempts < 128 else { return fd }
            }
        }
    }
}

// The new mount API's constants (linux/mount.h).
let FSOPEN_CLOEXEC = 0x1
let FSCONFIG_SET_FLAG = 0
let FSCONFIG_SET_STRING = 1
let FSCONFIG_CMD_CREATE = 6
let FSMOUNT_CLOEXEC = 0x1
let MOVE_MOUNT_F_EMPTY_PATH = 0x4

// Flags glibc only declares with _GNU_SOURCE, which Swift's Glibc module is not built with
// (asm-generic/fcntl.h, linux/fcntl.h).
let O_PATH: Int32 = 0o10000000
let AT_EMPTY_PATH: Int32 = 0x1000
let F_SETPIPE_SZ: Int32 = 1031

// sys/xattr.h is not part of Swift's Glibc module; the xattr calls go through syscall(2).
#if arch(x86_64)
private let SYS_lsetxattr = 189, SYS_fsetxattr = 190, SYS_lgetxattr = 192, SYS_fgetxattr = 193
private let SYS_llistxattr = 195, SYS_flistxattr = 196, SYS_fremovexattr = 199
#elseif arch(arm64)
private let SYS_lsetxattr = 6, SYS_fsetxattr = 7, SYS_lgetxattr = 9, SYS_fgetxattr = 10
private let SYS_llistxattr = 12, SYS_flistxattr = 13, SYS_fremovexattr = 16
#endif

/// fremovexattr(2).
func fremovexattr(_ fd: Int32, _ name: String) -> Int32 {
    name.withCString { Int32(syscall6(SYS_fremovexattr, Int(fd), Int(bitPattern: $0))) }
}

/// fsetxattr(2).
func fsetxattr(_ fd: Int32, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32)
    -> Int32
{
    Int32(syscall6(SYS_fsetxattr, Int(fd), Int(bitPattern: name), Int(bitPattern: value), size, Int(flags)))
}

/// lsetxattr(2).
func lsetxattr(_ path: String, _ name: UnsafePointer<CChar>, _ value: UnsafeRawPointer?, _ size: Int, _ flags: Int32)
    -> Int32
{
    path.withCString {
        Int32(syscall6(SYS_lsetxattr, Int(bitPattern: $0), Int(bitPattern: name), Int(bitPattern: value), size,
                       Int(flags)))
    }
}

/// The xattrs of a file as name → value: of the open `fd`, or of `path` without following a
/// final symlink when `fd` is `nil`. Empty where the file system has no xattrs.
func readXattrs(fd: Int32?, path: String) -> [String: [UInt8]] {
    func list(_ buffer: UnsafeMutableRawPointer?, _ size: Int) -> Int {
        if let fd { return syscall6(SYS_flistxattr, Int(fd), Int(bitPattern: buffer), size) }
        return path.withCString { syscall6(SYS_llistxattr, Int(bitPattern: $0), Int(bitPattern: buffer), size) }
    }
    func get(_ name: UnsafePointer<CChar>, _ buffer: UnsafeMutableRawPointer?, _ size: Int) -> Int {
        if let fd { return syscall6(SYS_fgetxattr, Int(fd), Int(bitPattern: name), Int(bitPattern: buffer), size) }
        return path.withCString {
            syscall6(SYS_lgetxattr, Int(bitPattern: $0), Int(bitPattern: name), Int(bitPattern: buffer), size)
        }
    }
    let length = list(nil, 0)
    guard length > 0 else { return [:] }
    var names = [UInt8](repeating: 0, count: length)
    let got = names.withUnsafeMutableBytes { list($0.baseAddress, length) }
    guard got > 0 else { return [:] }
    var result: [String: [UInt8]] = [:]
    for rawName in names[..<got].split(separator: 0) {
        let name = String(decoding: rawName, as: UTF8.self)
        let size = name.withCString { get($0, nil, 0) }
        guard size >= 0 else { continue }
        var value = [UInt8](repeating: 0, count: size)
        let read = name.withCString { key in value.withUnsafeMutableBytes { get(key, $0.baseAddress, size) } }
        if read >= 0 { result[name] = Array(value[..<read]) }
    }
    return result
}

#if arch(x86_64)
let SYS_pipe2 = 293
#elseif arch(arm64)
let SYS_pipe2 = 59
#endif

#if arch(x86_64)
let SYS_copy_file_range = 326
#elseif arch(arm64)
let SYS_copy_file_range = 285
#endif
