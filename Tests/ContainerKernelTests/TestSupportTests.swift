// Self-tests of TestSupport: if these fail, every container test's verdict is suspect.

import Glibc
import TestSupport
import Testing

@Suite("TestSupport", .serialized)
struct TestSupportTests {
    @Test func busyboxRootfsHasShellAndProbe() throws {
        let root = try TestRootfs.busybox()
        for path in ["/bin/busybox", "/bin/sh", "/bin/ls", TestRootfs.probe] {
            #expect(access(root + path, X_OK) == 0, "\(root + path) is not executable")
        }
        for path in ["/proc", "/sys", "/dev", "/tmp", "/etc/passwd", "/etc/group", "/etc/hostname"] {
            #expect(access(root + path, F_OK) == 0, "\(root + path) is missing")
        }
        // A second call returns the same cached tree.
        #expect(try TestRootfs.busybox() == root)
    }

    @Test func probeRunsOnTheHostAndFollowsItsFormat() throws {
        let probe = try TestRootfs.busybox() + TestRootfs.probe
        let echo = try runProbe(probe, ["echo", "hello", "world"])
        #expect(echo.status == 0)
        #expect(echo.output.lines == ["hello world"])

        let status = try runProbe(probe, ["status"])
        #expect(status.status == 0)
        #expect(status.output["pid"].flatMap { Int32($0) } != nil)
        #expect(status.output["CapEff"]?.count == 16)
        #expect(status.output["NoNewPrivs"] != nil)

        let missing = try runProbe(probe, ["read", "/nonexistent/berth"])
        #expect(missing.status == 1)
        #expect(missing.output.result == .failed(name: "ENOENT", code: 2))

        let bounded = try runProbe(probe, ["forkbomb", "3"])
        #expect(bounded.output["forks"] == "3")
        #expect(bounded.output.result == .ok)

        let exit = try runProbe(probe, ["exit", "7"])
        #expect(exit.status == 7)
    }

    @Test func writableCopyIsPrivateAndRemovable() throws {
        let shared = try TestRootfs.busybox()
        let copy = try TestRootfs.writableCopy()
        #expect(access(copy.path + TestRootfs.probe, X_OK) == 0)
        let marker = copy.path + "/tmp/written-by-test"
        let fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        close(fd)
        #expect(access(shared + "/tmp/written-by-test", F_OK) != 0)
        try copy.remove()
        #expect(access(copy.path, F_OK) != 0)
    }

    @Test func snapshotComparedWithItselfIsClean() {
        let snapshot = LeakSnapshot.take()
        #expect(snapshot.leaks(since: snapshot).isEmpty)
        #expect(!snapshot.mounts.isEmpty)
        #expect(snapshot.interfaces.contains("lo"))
    }

    @Test func unclosedPipeIsReportedUntilClosed() async throws {
        let before = LeakSnapshot.take()
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        let leaks = LeakSnapshot.take().leaks(since: before)
        #expect(leaks.contains { $0.hasPrefix("fd \(fds[0]) -> pipe:") }, "\(leaks)")
        #expect(leaks.contains { $0.hasPrefix("fd \(fds[1]) -> pipe:") }, "\(leaks)")
        close(fds[0])
        close(fds[1])
        let after = await LeakSnapshot.expectClean(since: before)
        #expect(after.isEmpty, "\(after)")
    }

    @Test func unreapedChildIsReportedUntilReaped() async throws {
        let before = LeakSnapshot.take()
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { argv.forEach { free($0) } }
        try #require(posix_spawn(&pid, "/bin/true", nil, nil, argv, nil) == 0)
        let leaks = LeakSnapshot.take().leaks(since: before)
        #expect(leaks.contains { $0.hasPrefix("child process \(pid) ") }, "\(leaks)")
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
        let after = await LeakSnapshot.expectClean(since: before)
        #expect(after.isEmpty, "\(after)")
    }

    @Test func newBerthCgroupBelowSharedParentIsReportedUntilRemoved() async throws {
        let before = LeakSnapshot.take()
        // Any cgroup hierarchy will do: the first one in mountinfo order.
        let hierarchy = try #require(
            before.mounts.first { $0.contains(" (cgroup ") || $0.contains(" (cgroup2 ") }?
                .split(separator: " ").first.map(String.init))
        let group = "\(hierarchy)/berth-testsupport-\(getpid())"
        try #require(mkdir(group, 0o755) == 0)
        defer { rmdir(group + "/child"); rmdir(group) }
        try #require(mkdir(group + "/child", 0o755) == 0)
        // The new top-level group is taken for Berth's shared parent; its child is the leak.
        let leaks = LeakSnapshot.take().leaks(since: before)
        #expect(leaks == ["cgroup \(group)/child"])
        rmdir(group + "/child")
        rmdir(group)
        #expect(await LeakSnapshot.expectClean(since: before).isEmpty)
    }

    @Test func newStateEntryIsReported() async throws {
        let state = try TemporaryDirectory(prefix: "state")
        defer { try? state.remove() }
        let before = LeakSnapshot.take(stateDirectories: [state.path])
        try #require(mkdir(state.path + "/container-1", 0o755) == 0)
        try #require(mkdir(state.path + "/container-1/rootfs", 0o755) == 0)
        let leaks = LeakSnapshot.take(stateDirectories: [state.path]).leaks(since: before)
        #expect(leaks == ["state entry \(state.path)/container-1"])
        rmdir(state.path + "/container-1/rootfs")
        rmdir(state.path + "/container-1")
        #expect(await LeakSnapshot.expectClean(since: before, settle: .zero).isEmpty)
    }

    private func runProbe(_ probe: String, _ args: [String]) throws -> (status: Int32, output: ProbeOutput) {
        var fds: [Int32] = [-1, -1]
        try #require(pipe(&fds) == 0)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        let argv = ([probe] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, probe, &actions, nil, argv, nil)
        close(fds[1])
        defer { close(fds[0]) }
        try #require(rc == 0)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while case let n = read(fds[0], &buffer, buffer.count), n > 0 {
            bytes += buffer[0..<n]
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return ((status >> 8) & 0xff, ProbeOutput(String(decoding: bytes, as: UTF8.self)))
    }
}
