import ContainerKernel
import Glibc
import Testing
import TestSupport

/// Every escape attempt fails under the defaults, and with the errno Docker users would see.
@Suite(.serialized)
struct EscapeTests {
    struct Attempt: CustomTestStringConvertible, Sendable {
        var arguments: [String]
        var allowed: Set<String>
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static let denied: Set<String> = ["EPERM", "EACCES"]

    static let attempts: [Attempt] = [
        Attempt(arguments: ["mount-tmpfs", "/mnt"], allowed: denied),
        Attempt(arguments: ["umount", "/proc"], allowed: denied),
        Attempt(arguments: ["unshare-user"], allowed: denied),
        Attempt(arguments: ["reboot"], allowed: denied),
        Attempt(arguments: ["init-module"], allowed: denied),
        // /proc/sys is a read-only bind (Docker's default): the write fails as read-only.
        Attempt(arguments: ["write", "/proc/sys/kernel/hostname", "escaped"], allowed: denied.union(["EROFS"])),
        Attempt(arguments: ["mknod-block", "/tmp/sda"], allowed: denied),
        // Kernels built without CONFIG_PROC_KCORE (this CI VM's) have nothing to read.
        Attempt(arguments: ["read", "/proc/kcore"], allowed: access("/proc/kcore", F_OK) == 0 ? denied : ["ENOENT"]),
    ]

    @Test(arguments: attempts)
    func escapeFailsUnderTheDefaults(_ attempt: Attempt) async throws {
        var spec = try busyboxSpec([TestRootfs.probe] + attempt.arguments)
        spec.cgroup = CgroupPlacement(path: testCgroupPath("escape"))
        let result = try await runToEnd(spec)
        guard case .failed(let name, _)? = result.probe.result else {
            Issue.record("\(attempt.testDescription) was not refused: \(result.stdout) \(result.stderr)")
            return
        }
        #expect(attempt.allowed.contains(name), "\(attempt.testDescription): \(name)")
    }

    @Test func ptraceOfAHostProcessFails() async throws {
        // The host's pid 1 (and this test process) are invisible: attaching cannot reach them.
        for pid in ["1", "\(getpid())"] {
            let result = try await probe("ptrace", pid)
            guard case .failed(let name, _)? = result.probe.result else {
                Issue.record("ptrace \(pid) succeeded")
                continue
            }
            #expect(["EPERM", "ESRCH", "EACCES"].contains(name))
        }
    }

    @Test func hostnameOfTheHostIsUntouched() async throws {
        var before = [CChar](repeating: 0, count: 256)
        gethostname(&before, 255)
        _ = try await probe("write", "/proc/sys/kernel/hostname", "escaped")
        var after = [CChar](repeating: 0, count: 256)
        gethostname(&after, 255)
        #expect(before == after)
    }
}
