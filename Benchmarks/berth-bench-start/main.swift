// berth-bench-start: start-to-exit of a container through the library, in-process and warm.
//
// Usage: berth-bench-start [--exec] ROOTFS [RUNS] [PROGRAM]
// Prints one line per statistic (median_ms, p10_ms, p90_ms, runs) for scripts/bench.
//
// Each run is what `crun run` does for the same bundle: new pid, mount, uts, ipc, network and
// cgroup namespaces, a cgroup, Docker's default capabilities and seccomp profile, masked and
// read-only paths, a tmpfs /dev, then wait for the exit and remove the cgroup.
// With --exec, each run is what `crun exec` does: PROGRAM joins the namespaces and the cgroup
// of one running container (`sleep`) and is waited for.
import ContainerKernel

#if canImport(Glibc)
import Glibc
#endif

@main
struct BenchStart {
    static func main() async throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let exec = arguments.first == "--exec"
        if exec { arguments.removeFirst() }
        guard let rootfs = arguments.first else {
            print("usage: berth-bench-start [--exec] ROOTFS [RUNS] [PROGRAM]")
            exit(2)
        }
        let runs = arguments.count > 1 ? Int(arguments[1]) ?? 200 : 200
        let program = arguments.count > 2 ? arguments[2] : "/bin/true"
        var spec = ProcessSpec(rootfs: rootfs, arguments: [program])
        spec.io = .null
        var target: ProcessHandle?
        if exec {
            var container = ProcessSpec(rootfs: rootfs, arguments: ["/bin/sleep", "1000"])
            container.io = .null
            container.cgroup = CgroupPlacement(path: "berth-bench/\(getpid())-container")
            let running = try await ProcessHandle.spawn(container)
            spec.rootfs = nil
            spec.namespaces = []
            spec.joinNamespaces = NamespaceJoin.all([.pid, .mount, .uts, .ipc, .network, .cgroup], of: running.pid)
            spec.joinCgroup = running.cgroup
            target = running
        }
        let clock = ContinuousClock()
        var samples: [Double] = []
        for index in 0..<(runs + runs / 10) {
            if !exec { spec.cgroup = CgroupPlacement(path: "berth-bench/\(getpid())-\(index)") }
            let start = clock.now
            let process = try await ProcessHandle.spawn(spec)
            let status = try await process.wait()
            let elapsed = clock.now - start
            guard status.isSuccess else {
                print("run \(index): \(program) \(status)")
                exit(1)
            }
            // The first tenth warms caches (seccomp compilation, dentries) and is not counted.
            if index >= runs / 10 {
                samples.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1e3)
            }
        }
        if let target {
            try target.signal(.kill)
            _ = try await target.wait()
        }
        samples.sort()
        func percentile(_ p: Double) -> Double { samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
        print("median_ms=\(percentile(0.5))")
        print("p10_ms=\(percentile(0.1))")
        print("p90_ms=\(percentile(0.9))")
        print("runs=\(samples.count)")
    }
}
