// Test root filesystems: Debian's static busybox, one symlink per applet, and /bin/probe
// compiled from probe.c. Built once per (busybox, probe.c) pair and cached under
// /var/tmp/berth-tests, so every test process after the first gets it for free.

import Foundation
import Glibc
import Synchronization

/// Root filesystems for tests that run real containers.
///
/// ```swift
/// let rootfs = try TestRootfs.busybox()          // shared and cached: do not write into it
/// let scratch = try TestRootfs.writableCopy()    // a private copy
/// defer { try? scratch.remove() }
/// ```
public enum TestRootfs {
    /// Where test root filesystems, their copies and temporary directories live.
    public static let cacheDirectory = "/var/tmp/berth-tests"

    /// The path of the probe inside a test root filesystem.
    public static let probe = "/bin/probe"

    /// The packages that provide what the build needs, for error messages.
    static let packageHint = "install busybox-static, gcc and libc6-dev (scripts/install-deps does it)"

    /// Bump when the layout written by `populate` changes, so old caches are not reused.
    static let layoutVersion = 1

    private static let built = Mutex<String?>(nil)

    /// Returns the path of the shared busybox root filesystem, building it on first use.
    ///
    /// The tree holds `/bin/busybox` with a symlink per applet (so `/bin/sh` exists), the
    /// static probe at `/bin/probe`, the usual empty directories, and `/etc/passwd`,
    /// `/etc/group` (root and nobody) and `/etc/hostname`. It is shared by every test and
    /// every test process: treat it as read-only and use ``writableCopy()`` to write.
    ///
    /// The first call in a machine's life compiles the probe (about a second); later calls
    /// only hash busybox and probe.c. Concurrent builders are safe: each builds in a private
    /// directory and renames it into place, and the loser discards its copy.
    ///
    /// - Returns: The absolute path, `/var/tmp/berth-tests/rootfs-<hash>`.
    /// - Throws: ``TestSupportError`` naming the package to install when busybox-static or
    ///   the C toolchain is missing, or when building fails.
    public static func busybox() throws -> String {
        try built.withLock { cached in
            if let cached { return cached }
            let path = try buildIfNeeded()
            cached = path
            return path
        }
    }

    /// Makes a private, writable copy of the busybox root filesystem.
    ///
    /// - Returns: The copy; the caller removes it with ``TemporaryDirectory/remove()``.
    /// - Throws: ``TestSupportError`` when the shared tree cannot be built or copied.
    public static func writableCopy() throws -> TemporaryDirectory {
        let source = try busybox()
        let copy = try TemporaryDirectory(prefix: "rootfs", in: cacheDirectory + "/copies")
        let (status, output) = try runProgram(["cp", "-a", source + "/.", copy.path])
        guard status == 0 else {
            try? copy.remove()
            throw TestSupportError("copy \(source) to \(copy.path): cp exited \(status): \(output)")
        }
        return copy
    }

    /// The path of `probe.c` on this machine.
    ///
    /// - Throws: ``TestSupportError`` when the source cannot be found.
    public static func probeSource() throws -> String {
        // Package.swift excludes probe.c from the target (it is compiled -static at test time,
        // not by SwiftPM); tests always run from a checkout, so it sits beside this file.
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("probe.c").path
        guard access(path, R_OK) == 0 else { throw TestSupportError("find probe.c: not readable at \(path)") }
        return path
    }

    // MARK: - Building

    private static func buildIfNeeded() throws -> String {
        let busyboxPath = try findBusybox()
        let probePath = try probeSource()
        let busyboxBytes = try readBytes(busyboxPath)
        let probeBytes = try readBytes(probePath)
        guard !isDynamicELF(busyboxBytes) else {
            throw TestSupportError("\(busyboxPath) is dynamically linked and cannot run in a bare rootfs: \(packageHint)")
        }

        var hash = FNV1a()
        hash.add(Array("berth-test-rootfs-v\(layoutVersion)".utf8))
        hash.add(busyboxBytes)
        hash.add(probeBytes)
        let final = "\(cacheDirectory)/rootfs-\(hash.hex)"
        if isComplete(final) { return final }

        try makeDirectories(cacheDirectory)
        let staging = try TemporaryDirectory(prefix: ".rootfs-staging", in: cacheDirectory)
        do {
            try populate(staging.path, busybox: busyboxBytes, busyboxPath: busyboxPath, probe: probePath)
        } catch {
            try? staging.remove()
            throw error
        }
        if rename(staging.path, final) != 0 {
            let code = errno
            try? staging.remove()
            // Another process won the race: its tree is complete, because it was renamed whole.
            guard (code == EEXIST || code == ENOTEMPTY) && isComplete(final) else {
                throw TestSupportError.errno("rename \(staging.path) to \(final)", code)
            }
        }
        return final
    }

    private static func isComplete(_ root: String) -> Bool {
        access(root + "/bin/sh", X_OK) == 0 && access(root + probe, X_OK) == 0
    }

    private static func findBusybox() throws -> String {
        for candidate in ["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"]
        where access(candidate, X_OK) == 0 {
            return candidate
        }
        throw TestSupportError("find busybox: no /bin/busybox: \(packageHint)")
    }

    private static func populate(_ root: String, busybox: [UInt8], busyboxPath: String, probe probePath: String) throws {
        for (dir, mode) in [
            ("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("mnt", 0o755),
            ("proc", 0o555), ("root", 0o700), ("run", 0o755), ("sys", 0o555), ("tmp", 0o1777),
            ("usr", 0o755), ("var", 0o755), ("var/tmp", 0o1777),
        ] as [(String, mode_t)] {
            guard mkdir("\(root)/\(dir)", mode) == 0, chmod("\(root)/\(dir)", mode) == 0 else {
                throw TestSupportError.errno("mkdir \(root)/\(dir)")
            }
        }
        // Everything lives in /bin; the other usual places point there.
        for (link, target) in [("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin"), ("var/run", "../run")] {
            guard symlink(target, "\(root)/\(link)") == 0 else { throw TestSupportError.errno("symlink \(root)/\(link)") }
        }

        try writeFile("\(root)/bin/busybox", busybox, mode: 0o755)
        let (status, list) = try runProgram([busyboxPath, "--list"])
        guard status == 0 else { throw TestSupportError("\(busyboxPath) --list exited \(status): \(list)") }
        for applet in list.split(separator: "\n").map(String.init)
        where !applet.isEmpty && !applet.contains("/") && applet != "busybox" {
            guard symlink("busybox", "\(root)/bin/\(applet)") == 0 || errno == EEXIST else {
                throw TestSupportError.errno("symlink \(root)/bin/\(applet)")
            }
        }
        guard access("\(root)/bin/sh", F_OK) == 0 || symlink("busybox", "\(root)/bin/sh") == 0 else {
            throw TestSupportError.errno("symlink \(root)/bin/sh")
        }

        let compile = ["cc", "-static", "-O2", "-std=gnu11", "-Wall", "-o", "\(root)/bin/probe", probePath]
        let compiled: (status: Int32, output: String)
        do {
            compiled = try runProgram(compile)
        } catch {
            throw TestSupportError("compile \(probePath): \(error): \(packageHint)")
        }
        guard compiled.status == 0 else {
            throw TestSupportError(
                "compile \(probePath) (\(compile.joined(separator: " "))) exited \(compiled.status): "
                    + "\(compiled.output)\(packageHint)")
        }

        try writeFile("\(root)/etc/passwd", Array("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n".utf8))
        try writeFile("\(root)/etc/group", Array("root:x:0:\nnobody:x:65534:\n".utf8))
        try writeFile("\(root)/etc/hostname", Array("berth-test\n".utf8))
        try writeFile("\(root)/etc/hosts", Array("127.0.0.1\tlocalhost\n::1\tlocalhost\n".utf8))
    }

    private static func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw TestSupportError.errno("create \(path)") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw TestSupportError.errno("write \(path)") }
            offset += n
        }
        guard fchmod(fd, mode) == 0 else { throw TestSupportError.errno("chmod \(path)") }
    }

    /// Whether an ELF image has a PT_INTERP program header, i.e. needs a dynamic loader.
    private static func isDynamicELF(_ image: [UInt8]) -> Bool {
        func le(_ offset: Int, _ size: Int) -> Int {
            guard offset + size <= image.count else { return 0 }
            return (0..<size).reduce(0) { $0 | Int(image[offset + $1]) << (8 * $1) }
        }
        // 64-bit little-endian ELF only (what Debian ships on amd64/arm64); anything else is
        // left for the exec to judge.
        guard image.count > 64, image[0..<4] == [0x7f, 0x45, 0x4c, 0x46], image[4] == 2, image[5] == 1 else {
            return false
        }
        let phoff = le(0x20, 8), phentsize = le(0x36, 2), phnum = le(0x38, 2)
        let ptInterp = 3
        return (0..<phnum).contains { le(phoff + $0 * phentsize, 4) == ptInterp }
    }
}

/// 64-bit FNV-1a: a cache key, not a security boundary.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { buffer in
            for byte in buffer {
                value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            }
        }
        // Mix in the length, so ("ab", "c") and ("a", "bc") differ.
        value = (value ^ UInt64(bytes.count)) &* 0x0000_0100_0000_01b3
    }

    var hex: String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
