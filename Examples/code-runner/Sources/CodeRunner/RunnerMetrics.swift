import CoreMetrics
import Metrics
import Prometheus

/// The server's metrics, through swift-metrics into a Prometheus registry of its own, served
/// as text by `GET /metrics`.
///
/// The registry is the server's, not the process's global `MetricsSystem`: two servers in one
/// process (as in the tests) count apart.
public struct RunnerMetrics: Sendable {
    /// The registry `GET /metrics` prints.
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    /// Containers of runs that exist now.
    let containersAlive: Meter
    /// Runs waiting for a slot.
    let queueDepth: Meter
    private let latency: Metrics.Timer

    /// Metrics in a new registry.
    public init() {
        registry = PrometheusCollectorRegistry()
        factory = PrometheusMetricsFactory(registry: registry)
        containersAlive = Meter(label: "code_runner_containers_alive", factory: factory)
        queueDepth = Meter(label: "code_runner_queue_depth", factory: factory)
        latency = Metrics.Timer(label: "code_runner_run_duration_seconds", factory: factory)
        containersAlive.set(0)
        queueDepth.set(0)
    }

    /// Counts a run that ran, by how it ended, and its latency.
    func finished(_ result: RunResult, duration: Duration) {
        let outcome = result.timedOut ? "timeout" : result.oomKilled ? "oom" : result.exitCode == 0 ? "ok" : "nonzero_exit"
        Counter(label: "code_runner_runs_total", dimensions: [("outcome", outcome)], factory: factory).increment()
        if outcome != "ok" { failed(outcome) }
        latency.recordNanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    /// Counts a failure: `timeout`, `oom`, `nonzero_exit`, `start_error`, `rejected` (queue full),
    /// `bad_request`.
    func failed(_ kind: String) {
        Counter(label: "code_runner_run_failures_total", dimensions: [("kind", kind)], factory: factory).increment()
    }

    /// The Prometheus text.
    func text() -> [UInt8] { registry.emitToBuffer() }
}
