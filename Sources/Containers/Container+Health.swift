import ContainerKernel
import FoundationEssentials

extension Container {
    /// The health check that applies: the configuration's, else the image's.
    var healthcheck: HealthcheckConfiguration? {
        configuration.healthcheck ?? image.config.config?.healthcheck.flatMap(HealthcheckConfiguration.init)
    }

    /// Runs the health check on its interval while the container runs, as Docker does:
    /// failures inside the start period do not count; `retries` consecutive failures make the
    /// container unhealthy; one success makes it healthy. Each change is an event.
    ///
    /// - Returns: The task running the checks (the run cancels it when it ends), or `nil`
    ///   without a health check.
    func healthChecks() -> Task<Void, Never>? {
        guard let check = healthcheck else { return nil }
        return Task.detached { [self] in
            let started = ContinuousClock.now
            var failures = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: check.interval)
                guard !Task.isCancelled, state.status == .running else { continue }
                let passed = await runCheck(check)
                let inStartPeriod = ContinuousClock.now - started < check.startPeriod
                failures = passed ? 0 : failures + (inStartPeriod ? 0 : 1)
                let previous = state.health
                let next: HealthStatus = passed ? .healthy : failures >= check.retries ? .unhealthy : (previous ?? .starting)
                if next != previous {
                    update { $0.record.state.health = next }
                    runtime.publish(.healthStatus, self, ["health": next.rawValue])
                }
            }
        }
    }

    private func runCheck(_ check: HealthcheckConfiguration) async -> Bool {
        guard let process = try? await startExec(check.command, io: .null) else { return false }
        do {
            return try await process.wait(timeout: check.timeout).isSuccess
        } catch {
            // Timed out (or the checks were cancelled): the check fails and its process must not linger.
            try? process.signal(.kill)
            _ = await process.exited()
            return false
        }
    }
}
