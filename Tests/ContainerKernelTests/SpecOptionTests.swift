import ContainerKernel
import Glibc
import Testing
import TestSupport

/// The rest of what a ``ProcessSpec`` can say, each seen from inside the container.
@Suite(.serialized)
struct SpecOptionTests {
    func shell(_ script: String, configure: (inout ProcessSpec) throws -> Void = { _ in }) async throws -> Finished {
        var spec = try busyboxSpec(["/bin/sh", "-c", script])
        try configure(&spec)
        return try await runToEnd(spec)
    }

    @Test func resourceLimitsAreSetFromTheParent() async throws {
        let result = try await shell("ulimit -n; ulimit -Hn") {
            $0.resourceLimits = [ResourceLimit(.openFiles, soft: 100, hard: 200)]
        }
        #expect(result.stdout == "100\n200\n", "\(result.stderr)")
    }

    @Test func sysctlsAreWrittenInTheContainersNamespaces() async throws {
        let result = try await shell("cat /proc/sys/net/ipv4/ip_unprivileged_port_start") {
            $0.sysctls = ["net.ipv4.ip_unprivileged_port_start": "80"]
        }
        #expect(result.stdout == "80\n", "\(result.stderr)")
    }

    @Test func oomScoreAdjustmentAndUmaskApply() async throws {
        let own = { () -> String in
            let file = fopen("/proc/self/oom_score_adj", "r")
            defer { if let file { fclose(file) } }
            var line = [CChar](repeating: 0, count: 16)
            return file.flatMap { fgets(&line, 16, $0) }.map { _ in String(decoding: line.prefix { $0 != 0 }.map(UInt8.init), as: UTF8.self) } ?? ""
        }
        let before = own()
        let result = try await shell("cat /proc/self/oom_score_adj; umask") {
            $0.oomScoreAdjustment = 500
            $0.umask = 0o077
        }
        #expect(result.stdout == "500\n0077\n", "\(result.stderr)")
        // The child shared this process's address space, and so its score, until its execve.
        #expect(own() == before && before != "500\n")
        let byDefault = try await shell("umask")
        #expect(byDefault.stdout == "0022\n")
    }

    @Test func userNamespaceMapsRootToAnUnprivilegedHostID() async throws {
        let result = try await probe("status") {
            $0.namespaces.insert(.user)
            $0.uidMappings = [IDMapping(containerID: 0, hostID: 100_000, size: 65536)]
            $0.gidMappings = [IDMapping(containerID: 0, hostID: 100_000, size: 65536)]
        }
        #expect(result.status == .exited(0), "\(result.stderr)")
        #expect(result.probe["uid"] == "0")
        #expect(result.probe["pid"] == "1")
        let map = try await shell("cat /proc/self/uid_map") {
            $0.namespaces.insert(.user)
            $0.uidMappings = [IDMapping(containerID: 0, hostID: 100_000, size: 65536)]
            $0.gidMappings = [IDMapping(containerID: 0, hostID: 100_000, size: 65536)]
        }
        #expect(map.stdout.split(whereSeparator: \.isWhitespace) == ["0", "100000", "65536"])
    }

    @Test func userNamespaceWithoutMappingsIsATypedError() async throws {
        var spec = try busyboxSpec(["/bin/true"])
        spec.namespaces.insert(.user)
        await #expect(throws: KernelError.self) { _ = try await ProcessHandle.spawn(spec) }
    }

    @Test func customSeccompProfileInOCIFormatApplies() async throws {
        let json = """
            {"defaultAction": "SCMP_ACT_ALLOW",
             "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
            """
        let profile = try SeccompProfile(json: Array(json.utf8))
        let result = try await shell("mkdir /tmp/x") { $0.seccomp = .profile(profile) }
        #expect(result.status == .exited(1))
        #expect(result.stderr.contains("Permission denied"), "\(result.stderr)")
    }

    @Test func privilegedSettingsLiftTheDefaults() async throws {
        let result = try await probe("status") {
            $0.capabilities = .all
            $0.seccomp = .unconfined
        }
        #expect(result.probe["CapEff"] == hex16(Capability.all.reduce(0) { $0 | (1 << UInt64($1.rawValue)) }))
        #expect(result.probe["Seccomp"] == "0")
    }

    @Test func maskedPathsAreHiddenAfterSysctlsAreApplied() async throws {
        // The host has entries in /sys/firmware; masked, the container sees an empty tmpfs.
        #expect(access("/sys/firmware/acpi", F_OK) == 0 || access("/sys/firmware/memmap", F_OK) == 0)
        let result = try await shell("ls -A /sys/firmware | wc -l; cat /proc/sys/net/ipv4/ip_unprivileged_port_start") {
            $0.sysctls = ["net.ipv4.ip_unprivileged_port_start": "90"]
        }
        let lines = result.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines == ["0", "90"], "\(result.stdout)")
        // /proc/sys is read-only after the sysctls were written (this kernel has no
        // /proc/sysrq-trigger, so that default path cannot be checked here).
        let readOnly = try await probe("write", "/proc/sys/kernel/domainname", "x")
        #expect(readOnly.probe.result == .failed(name: "EROFS", code: 30))
    }

    @Test func extraFilesArePassedAsThreeAndUp() async throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]) }
        let writeEnd = fds[1]
        let result = try await shell("echo via-fd-3 >&3") {
            $0.extraFiles = [.init(rawValue: writeEnd)]
        }
        close(writeEnd)
        #expect(result.status == .exited(0), "\(result.stderr)")
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(fds[0], &buffer, 64)
        #expect(String(decoding: buffer[0..<max(0, n)], as: UTF8.self) == "via-fd-3\n")
    }

    @Test func processWithoutOwnRootRunsInTheHostRoot() async throws {
        var spec = ProcessSpec(rootfs: nil, arguments: ["/bin/sh", "-c", "echo $$"])
        spec.seccomp = .dockerDefault
        let result = try await runToEnd(spec)
        #expect(result.stdout == "1\n")
    }
}
