import ContainerKernel
import Glibc
import TestSupport

/// What a finished container printed and how it ended.
struct Finished {
    var status: ExitStatus
    var stdout: String
    var stderr: String
    var probe: ProbeOutput { ProbeOutput(stdout) }
}

/// A spec for the shared busybox test rootfs, with the defaults under test.
func busyboxSpec(_ arguments: [String], hostname: String? = "berth-test") throws -> ProcessSpec {
    var spec = ProcessSpec(rootfs: try TestRootfs.busybox(), arguments: arguments)
    spec.hostname = hostname
    return spec
}

/// A cgroup path unique to this test run.
func testCgroupPath(_ name: String) -> String {
    "berth-test/\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

/// Spawns, collects stdout and stderr, waits.
func runToEnd(_ spec: ProcessSpec) async throws -> Finished {
    let process = try await ProcessHandle.spawn(spec)
    async let out = process.standardOutput?.collect(limit: 1 << 20).text ?? ""
    async let err = process.standardError?.collect(limit: 1 << 20).text ?? ""
    let status = try await process.wait()
    return Finished(status: status, stdout: await out, stderr: await err)
}

/// Runs `/bin/probe ARGS…` in the busybox rootfs, after `configure` adjusts the spec.
func probe(_ arguments: String..., configure: (inout ProcessSpec) throws -> Void = { _ in }) async throws -> Finished {
    var spec = try busyboxSpec([TestRootfs.probe] + arguments)
    try configure(&spec)
    return try await runToEnd(spec)
}
