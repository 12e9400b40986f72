import AsyncHTTPClient
import Containers
import FoundationEssentials
import NIOCore
import Synchronization

/// What one check of a strategy saw.
enum Observation: Sendable {
    /// Ready.
    case ready
    /// Not yet, and why (`no socket listens on port 8080`).
    case notYet(String)
    /// Never: the check cannot pass any more, and why.
    case never(String)
}

extension WaitStrategy {
    /// Checks until ready, throwing ``FixtureError`` at the deadline (this strategy's own, if
    /// earlier than `overall`) or as soon as the container can never be ready.
    ///
    /// `logsSince` leaves out older log lines: those of the container's run before a restart.
    func wait(for container: Container, until overall: ContinuousClock.Instant, logsSince: Date? = nil) async throws {
        let deadline = timeout.map { min(overall, ContinuousClock.now.advanced(by: $0)) } ?? overall
        switch check {
        case .allOf(let strategies):
            for strategy in strategies { try await strategy.wait(for: container, until: deadline, logsSince: logsSince) }
        case .anyOf(let strategies):
            try await waitForAny(strategies, container: container, until: deadline, logsSince: logsSince)
        default:
            try await poll(container, until: deadline, logsSince: logsSince)
        }
    }

    /// Polls a single check: quickly at first (a service often takes milliseconds), then every
    /// 100 ms.
    private func poll(_ container: Container, until deadline: ContinuousClock.Instant, logsSince: Date?) async throws {
        var pause = Duration.milliseconds(2)
        while true {
            try Task.checkCancellation()
            let seen = await answer(before: deadline) { await self.observe(container, until: deadline, logsSince: logsSince) }
                ?? .notYet("the check did not answer before the deadline")
            switch seen {
            case .ready:
                return
            case .never(let why):
                throw await FixtureError.about(container, .neverReady, waitingFor: self, detail: why)
            case .notYet(let why):
                let status = container.state.status
                if status == .exited || status == .created {
                    // The end is final: one more look sees everything the process left (its
                    // last log line, its exit code).
                    if case .ready = await observe(container, until: deadline, logsSince: logsSince) { return }
                    throw await FixtureError.about(container, .neverReady, waitingFor: self,
                                                   detail: "the container is \(status); the last check: \(why)")
                }
                let now = ContinuousClock.now
                if now >= deadline {
                    throw await FixtureError.about(container, .timedOut, waitingFor: self, detail: "the last check: \(why)")
                }
                try await Task.sleep(for: min(pause, deadline - now))
                pause = min(pause * 2, .milliseconds(100))
            }
        }
    }

    /// Waits for the first of `strategies` to be ready; when all fail, throws one error
    /// naming each failure.
    private func waitForAny(_ strategies: [WaitStrategy], container: Container,
                            until deadline: ContinuousClock.Instant, logsSince: Date?) async throws {
        var failures: [String] = []
        var code = FixtureError.Code.neverReady
        try await withThrowingTaskGroup(of: Void.self) { group in
            for strategy in strategies {
                group.addTask { try await strategy.wait(for: container, until: deadline, logsSince: logsSince) }
            }
            while let result = await group.nextResult() {
                switch result {
                case .success:
                    group.cancelAll()
                    return
                case .failure(let error as FixtureError):
                    if error.code == .timedOut { code = .timedOut }
                    failures.append("\(error.waitingFor ?? "?"): \(error.detail)")
                case .failure(let error):
                    throw error
                }
            }
            throw await FixtureError.about(container, code, waitingFor: self, detail: failures.joined(separator: "; "))
        }
    }

    /// Ready when `port` is not published, or its host port listens: Berth's forwarder opens
    /// it once it has seen the container listen (it polls), and a client that connects right
    /// after the wait needs both.
    private func hostSide(of port: UInt16, in container: Container) -> Observation {
        guard let published = container.state.publishedPorts.first(where: { $0.containerPort == port && $0.transport == .tcp }) else {
            return .ready
        }
        do {
            return try ProcessView.hostListeningTCPPorts().contains(published.hostPort)
                ? .ready : .notYet("port \(port) answers, its published host port \(published.hostPort) not yet")
        } catch {
            return .notYet("\(error)")
        }
    }

    /// One check of a single (not composite) strategy.
    private func observe(_ container: Container, until deadline: ContinuousClock.Instant, logsSince: Date?) async -> Observation {
        switch check {
        case .running:
            return container.state.status == .running ? .ready : .notYet("the container is \(container.state.status)")
        case .logLine(let pattern, let times):
            let regex: Regex<AnyRegexOutput>
            do { regex = try Regex(pattern) } catch { return .never("/\(pattern)/ is not a regular expression: \(error)") }
            let matching = lines(of: await collectLogs(container, since: logsSince)).count(where: { $0.contains(regex) })
            return matching >= times ? .ready : .notYet("\(matching) of \(times) log lines match")
        case .listeningPort(let port):
            do {
                guard try ProcessView(of: container).listeningTCPPorts().contains(port) else {
                    return .notYet("no socket listens on port \(port)")
                }
                return hostSide(of: port, in: container)
            } catch {
                return .notYet("\(error)")
            }
        case .http(let path, let port, let status, let body):
            let answer = await httpCheck(container, path: path, port: port, status: status, body: body, until: deadline)
            guard case .ready = answer else { return answer }
            return hostSide(of: port, in: container)
        case .exec(let command, let exitCode):
            do {
                let result = try await container.exec(command)
                if result.status == .exited(exitCode) { return .ready }
                let said = (result.standardError + result.standardOutput).split(separator: "\n").last.map { ": \($0)" } ?? ""
                return .notYet("it ended: \(result.status)\(said)")
            } catch {
                return .notYet("\(error)")
            }
        case .fileExists(let path):
            do {
                return try ProcessView(of: container).exists(path) ? .ready : .notYet("\(path) does not exist")
            } catch {
                return .notYet("\(error)")
            }
        case .exit(let code):
            let state = container.state
            guard state.status == .exited else { return .notYet("the container is \(state.status)") }
            return state.exitCode == code ? .ready : .never("it exited with \(state.exitCode.map(String.init) ?? "no code")")
        case .allOf, .anyOf:
            preconditionFailure("composite strategies are waited for by wait(for:until:)")
        }
    }

    /// One HTTP request: to the container's bridge address, else to the published host port.
    private func httpCheck(_ container: Container, path: String, port: UInt16, status: Int,
                           body accepts: (@Sendable (String) -> Bool)?, until deadline: ContinuousClock.Instant) async -> Observation {
        let state = container.state
        let target: String
        if let address = state.addresses.sorted(by: { $0.key < $1.key }).first?.value {
            target = "\(address):\(port)"
        } else if let mapping = state.publishedPorts.first(where: { $0.containerPort == port && $0.transport == .tcp }) {
            target = "\(mapping.hostIP == IPv4Address(0) ? "127.0.0.1" : "\(mapping.hostIP)"):\(mapping.hostPort)"
        } else {
            return .never("port \(port) cannot be reached: the container is on no bridge network and does not publish it")
        }
        let url = "http://\(target)\(path.hasPrefix("/") ? path : "/" + path)"
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Connection", value: "close")
        let left = (deadline - .now).components
        let timeout = TimeAmount.nanoseconds(max(1, left.seconds * 1_000_000_000 + left.attoseconds / 1_000_000_000))
        do {
            let response = try await HTTPClient.shared.execute(request, deadline: .now() + timeout)
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            guard Int(response.status.code) == status else { return .notYet("GET \(url) answered \(response.status.code)") }
            if let accepts, !accepts(text) { return .notYet("GET \(url) answered \(status) with another body") }
            return .ready
        } catch {
            return .notYet("GET \(url): \(error)")
        }
    }
}

/// `body`'s result, or `nil` when `deadline` comes first or the task is cancelled; a `body`
/// that does not end (an exec'd command that hangs) is cancelled and left behind, not awaited.
func answer<T: Sendable>(before deadline: ContinuousClock.Instant,
                         _ body: @escaping @Sendable () async -> T) async -> T? {
    let race = Race<T?>()
    return await withTaskCancellationHandler {
        await withCheckedContinuation { continuation in
            race.begin(continuation, [
                Task {
                    try? await Task.sleep(until: deadline)
                    race.finish(nil)
                },
                Task { race.finish(await body()) },
            ])
        }
    } onCancel: {
        race.finish(nil)
    }
}

/// A continuation resumed once, by the first of its tasks to finish; the others are cancelled then.
private final class Race<T: Sendable>: Sendable {
    private let state = Mutex<(continuation: CheckedContinuation<T, Never>?, tasks: [Task<Void, Never>], result: T?)>((nil, [], nil))

    func begin(_ continuation: CheckedContinuation<T, Never>, _ tasks: [Task<Void, Never>]) {
        let early: T? = state.withLock { state in
            if let result = state.result { return result }
            state.continuation = continuation
            state.tasks = tasks
            return nil
        }
        if let early {
            tasks.forEach { $0.cancel() }
            continuation.resume(returning: early)
        }
    }

    func finish(_ value: T) {
        let (continuation, tasks) = state.withLock { state in
            if state.continuation == nil && state.result == nil { state.result = value }
            defer { state.continuation = nil; state.tasks = [] }
            return (state.continuation, state.tasks)
        }
        tasks.forEach { $0.cancel() }
        continuation?.resume(returning: value)
    }
}
