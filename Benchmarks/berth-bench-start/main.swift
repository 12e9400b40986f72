// berth-bench-start: start-to-exit of a container through the library, in-process and warm.
//
// Usage: berth-bench-start ROOTFS [RUNS] [PROGRAM]
// Prints one line per statistic (median_ms, p10_ms, p90_ms, runs) for scripts/bench.
//
// Each run is what `crun run` does for the same bundle: new pid, mount, uts, ipc, network and
// cgroup namespaces, a cgroup, Docker's default capabilities and seccomp profile, masked and
// read-only paths, a tmpfs /dev, then wait for the exit and remove the cgroup.
import ContainerKernel

#if canImport(Glibc)
import Glibc
#endif

@main
struct BenchStart {
    static func main() async throws {
        let arguments = CommandLine.arguments
        guard arguments.count >= 2 else {
            print("usage: berth-bench-start ROOTFS [RUNS] [PROGRAM]")
            exit(2)
        }
        let runs = arguments.count > 2 ? Int(arguments[2]) ?? 200 : 200
        let program = arguments.count > 3 ? arguments[3] : "/bin/true"
        var spec = ProcessSpec(rootfs: arguments[1], arguments: [program])
        spec.io = .null
        let clock = ContinuousClock()
        var samples: [Double] = []
        for index in 0..<(runs + runs / 10) {
            spec.cgroup = CgroupPlacement(path: "berth-bench/\(getpid())-\(index)")
            let start = clock.now
            let process = try await ProcessHandle.spawn(spec)
            let status = await process.wait()
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
        samples.sort()
        func percentile(_ p: Double) -> Double { samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
        print("median_ms=\(percentile(0.5))")
        print("p10_ms=\(percentile(0.1))")
        print("p90_ms=\(percentile(0.9))")
        print("runs=\(samples.count)")
    }
}
