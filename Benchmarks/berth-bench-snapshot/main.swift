// berth-bench-snapshot: start-to-exit of a container from an image, by snapshot driver.
//
// Usage: berth-bench-snapshot ROOT LAYOUT [RUNS]
//   ROOT    a scratch runtime root (the layout's images are imported there if missing)
//   LAYOUT  an OCI image layout; its image with the most layers is used (scripts/bench: the
//           4-layer `large` image of ../shared/bench/make-images.sh)
//   RUNS    measured runs per driver (default 10); one more runs first, uncounted
//
// Each run is `docker run --rm IMAGE /bin/true` without the engine: a snapshot of the image's
// layers (an overlay mount, or a copy of every layer), /bin/true started in it with the
// defaults of berth-bench-start (namespaces, cgroup, Docker's capabilities and seccomp
// profile), waited for, and the snapshot removed. Prints, per driver,
//   overlay median_ms=… p10_ms=… p90_ms=… remove_ms=… runs=…
// where the percentiles are of snapshot + start-to-exit, and remove_ms the median removal.
import ContainerKernel
import Containers
import Images
import Layers

#if canImport(Glibc)
import Glibc
#endif

@main
struct BenchSnapshot {
    static func main() async throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard arguments.count >= 2 else {
            print("usage: berth-bench-snapshot ROOT LAYOUT [RUNS]")
            exit(2)
        }
        let runs = arguments.count > 2 ? Int(arguments[2]) ?? 10 : 10
        let runtime = try ContainerRuntime(root: arguments[0])
        guard let image = try await runtime.images.importLayout(at: arguments[1]).max(by: { $0.layers.count < $1.layers.count })
        else {
            print("no image in \(arguments[1])")
            exit(1)
        }
        let top = try await runtime.images.unpack(image, into: runtime.layers)
        print("image \(image.reference?.description ?? image.id.description) layers=\(image.layers.count)")
        let clock = ContinuousClock()
        for driver in [SnapshotDriver.overlay, .copy] {
            var run: [Double] = [], remove: [Double] = []
            for index in 0...runs {
                let directory = arguments[0] + "/bench-\(getpid())-\(driver)-\(index)"
                let start = clock.now
                let snapshot = try runtime.layers.createSnapshot(topChainID: top, at: directory, driver: driver)
                guard snapshot.driver == driver else {
                    print("\(driver) is not available here: the snapshot is a \(snapshot.driver) one")
                    exit(1)
                }
                var spec = ProcessSpec(rootfs: snapshot.rootfs, arguments: ["/bin/true"])
                spec.io = .null
                spec.cgroup = CgroupPlacement(path: "berth-bench/\(getpid())-\(driver)-\(index)")
                let status = try await ProcessHandle.spawn(spec).wait()
                let ran = clock.now
                try snapshot.remove()
                guard status.isSuccess else {
                    print("\(driver) run \(index): /bin/true \(status)")
                    exit(1)
                }
                // The first run warms caches (seccomp compilation, dentries) and is not counted.
                if index > 0 {
                    run.append(milliseconds(ran - start))
                    remove.append(milliseconds(clock.now - ran))
                }
            }
            print("\(driver) median_ms=\(percentile(run, 0.5)) p10_ms=\(percentile(run, 0.1))",
                  "p90_ms=\(percentile(run, 0.9)) remove_ms=\(percentile(remove, 0.5)) runs=\(run.count)")
        }
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1e3 + Double(duration.components.attoseconds) / 1e15
    }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}
