public import ContainerKernel
public import FoundationEssentials
import SystemSupport

/// A container's resource use at one moment (`docker stats`).
public struct ContainerStats: Sendable, Hashable {
    /// When it was read.
    public var time: Date
    /// Memory, CPU, pids and block I/O from the cgroup.
    public var cgroup: CgroupStats
    /// Bytes received on every interface but `lo`.
    public var networkReceivedBytes: UInt64
    /// Bytes sent on every interface but `lo`.
    public var networkSentBytes: UInt64
}

extension Container {
    /// Reads the container's resource use now.
    ///
    /// - Throws: ``ContainerError/Code/invalidState`` unless running or paused.
    public func stats() throws(ContainerError) -> ContainerStats {
        let (run, record) = try requireRun("read stats of")
        let cgroup = try cgroup(of: run, for: "read stats of")
        let pid = run.process.pid
        let usage = try wrapping("read stats of", container: record.name) { try cgroup.stats() }
        var received: UInt64 = 0, sent: UInt64 = 0
        // /proc/<pid>/net/dev shows the counters of the process's own network namespace.
        for line in ((try? readWholeFile("/proc/\(pid)/net/dev")).map { String(decoding: $0, as: UTF8.self) } ?? "").split(separator: "\n").dropFirst(2) {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].split(separator: " ").last != "lo" else { continue }
            let fields = parts[1].split(separator: " ")
            guard fields.count >= 9 else { continue }
            received += UInt64(fields[0]) ?? 0
            sent += UInt64(fields[8]) ?? 0
        }
        return ContainerStats(time: Date(), cgroup: usage, networkReceivedBytes: received, networkSentBytes: sent)
    }

    /// Resource use every `interval` while the container runs (`docker stats` without `--no-stream`).
    ///
    /// - Parameter interval: Time between readings.
    /// - Returns: The readings; the sequence ends when the container stops.
    public func statsStream(interval: Duration = .seconds(1)) -> AsyncStream<ContainerStats> {
        AsyncStream { continuation in
            let task = Task.detached { [self] in
                while !Task.isCancelled, let reading = try? stats() {
                    continuation.yield(reading)
                    try? await Task.sleep(for: interval)
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
