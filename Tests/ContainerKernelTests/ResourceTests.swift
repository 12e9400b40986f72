import ContainerKernel
import Glibc
import Testing
import TestSupport

/// Cgroup limits applied to real containers on this machine's hierarchy (v1 here, v2 on most
/// users' machines).
@Suite(.serialized)
struct ResourceTests {
    @Test func memoryLimitKillsAnAllocationAboveItAsOOM() async throws {
        var resources = CgroupResources()
        resources.memoryLimit = 32 << 20
        resources.memorySwapLimit = 32 << 20
        let result = try await probe("alloc", "64") {
            $0.cgroup = CgroupPlacement(path: testCgroupPath("oom"), resources: resources)
        }
        #expect(result.status == .oomKilled)
        #expect(result.status.code == 137)
        let fits = try await probe("alloc", "8") {
            $0.cgroup = CgroupPlacement(path: testCgroupPath("fits"), resources: resources)
        }
        #expect(fits.status == .exited(0))
    }

    @Test func pidsLimitStopsAForkBomb() async throws {
        var resources = CgroupResources()
        resources.pidsLimit = 16
        let result = try await probe("forkbomb", "1000") {
            $0.cgroup = CgroupPlacement(path: testCgroupPath("pids"), resources: resources)
        }
        let forks = Int(result.probe["forks"] ?? "") ?? -1
        #expect(forks >= 1 && forks < 16, "\(result.stdout)")
        #expect(result.stdout.contains("EAGAIN"))
        // The host is unaffected: it can still start processes.
        #expect(try await probe("exit", "0").status == .exited(0))
    }

    @Test func cpuQuotaIsVisibleInStats() async throws {
        var resources = CgroupResources()
        resources.cpuQuota = 50_000
        resources.cpuPeriod = 100_000
        var spec = try busyboxSpec([TestRootfs.probe, "sleep", "5"])
        spec.cgroup = CgroupPlacement(path: testCgroupPath("cpu"), resources: resources)
        let process = try await ProcessHandle.spawn(spec)
        let stats = try #require(try process.cgroup?.stats())
        #expect(stats.cpuQuota == 50_000)
        #expect(stats.cpuPeriod == 100_000)
        #expect(stats.pidsCurrent == 1)
        try process.signal(.kill)
        _ = try await process.wait()
    }

    @Test func freezingStopsAndThawingResumes() async throws {
        var spec = try busyboxSpec(["/bin/sh", "-c", "while true; do echo tick; sleep 0.05; done"])
        spec.cgroup = CgroupPlacement(path: testCgroupPath("freeze"))
        let process = try await ProcessHandle.spawn(spec)
        let cgroup = try #require(process.cgroup)
        try await cgroup.freeze()
        #expect(try cgroup.isFrozen)
        try await cgroup.thaw()
        #expect(try !cgroup.isFrozen)
        try process.signal(.kill)
        _ = try await process.wait()
    }
}
