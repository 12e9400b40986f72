public import Containers
import FoundationEssentials
import Images
import Networking
import SystemSupport

/// Reuse across test runs: a fixture kept running after the test, for the next run (or another
/// test process) with the same image and configuration to use instead of starting its own.
extension Fixture {
    /// The label a reused fixture's container carries: the fixture's ``reuseKey(in:)``.
    public static let reuseLabel = "berth.fixture.reuse"

    /// This fixture, reused across test runs (Testcontainers' `withReuse`).
    ///
    /// ``start(in:)`` then looks for a running container made for the same image and the same
    /// configuration (its ``reuseKey(in:)``) and uses it; only when there is none does it start
    /// one, `ContainerLifetime.detached`, so that it outlives the test process. Processes that
    /// start the same fixture at once share one: the first creates it, under a lock in the
    /// runtime's root (`<root>/reuse/<key>.lock`), and the others wait for it to be ready.
    /// Every use renews its lease (`ContainerState.expires`) to `timeToLive` from then; once
    /// that passes unused, the sweep (`ContainerRuntime.pruneSessions()`, which every reuse runs
    /// first, and `berth system prune --sessions`) removes it.
    ///
    /// Removing a reused fixture (``RunningFixture/remove()``, the end of ``withFixture(_:in:_:)``)
    /// leaves it running. Its ports are published by each process that uses it
    /// (`Container.publish(_:)`: a detached container has no process of its own to hold them),
    /// each at a host port of its own, which ``RunningFixture/mappedPort(_:transport:)``
    /// gives; they close when the fixture is removed or the process ends. It is also reached
    /// at its ``RunningFixture/address`` on its bridge network.
    /// What a test changes in it stays for the next one: reset it with
    /// ``RunningFixture/snapshot()`` and ``RunningFixture/restore(_:)``.
    ///
    /// ```swift
    /// let db = Fixture(image: "busybox", command: ["httpd", "-f", "-p", "80"],
    ///                  network: .bridge([]), waitingFor: .listeningPort(80)).reused()
    /// ```
    ///
    /// - Parameter timeToLive: How long the fixture is kept after its last use.
    /// - Returns: The reused fixture.
    public func reused(for timeToLive: Duration = .seconds(600)) -> Fixture {
        var fixture = self
        fixture.reuseTimeToLive = timeToLive
        return fixture
    }

    /// The key that tells reused fixtures apart: the SHA-256 of the image's id (the image's
    /// name when it is not in the store yet) and of the configuration as sorted-keys JSON,
    /// with the files copied in (bytes as they are, host paths by name: a changed host file
    /// is not noticed).
    ///
    /// - Parameter runtime: The runtime whose image store resolves the image.
    /// - Returns: The key, 64 hexadecimal digits.
    /// - Throws: `EncodingError` when the configuration cannot be encoded.
    public func reuseKey(in runtime: ContainerRuntime) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var bytes = Array(((try? runtime.images.image(configuration.image))?.id.description ?? configuration.image).utf8)
        bytes += [0] + Array(try encoder.encode(configuration))
        for file in files {
            bytes += [0] + Array(file.path.utf8) + [0]
            switch file.content {
            case .bytes(let content, let mode): bytes += Array("\(mode):".utf8) + content
            case .hostPath(let path): bytes += Array("host:\(path)".utf8)
            }
        }
        return String(Digest.sha256(of: bytes).description.dropFirst("sha256:".count))
    }

    /// ``start(in:)`` for a fixture with ``reused(for:)``.
    func startReused(in runtime: ContainerRuntime, timeToLive: Duration) async throws -> RunningFixture {
        let deadline = ContinuousClock.now.advanced(by: startupTimeout)
        _ = await runtime.pruneSessions()
        let key = try reuseKey(in: runtime)
        let directory = runtime.root + "/reuse"
        try makeDirectories(directory, mode: 0o700)
        let lock = try await FileLock.acquire(directory + "/" + key + ".lock")
        defer { lock.unlock() }
        let expiry = Date.now.addingTimeInterval(Double(timeToLive.components.seconds))
        if let existing = runtime.list(all: true, labels: [Self.reuseLabel: key]).first {
            if existing.state.status == .running {
                try existing.setExpiry(expiry)
                try await waitStrategy.wait(for: existing, until: deadline)
                return try await publishingPorts(of: RunningFixture(container: existing, fixture: self), until: deadline)
            }
            try await removeOutsideCancellation(existing)  // stopped or never started: replaced
        }
        var configuration = configuration
        configuration.lifetime = .detached
        configuration.ports = []  // published by each process that uses it
        configuration.labels[Self.reuseLabel] = key
        // The expiry first: a creator killed before the start leaves a container that expires too.
        let created = try await createAndStart(configuration, in: runtime, until: deadline) { try $0.setExpiry(expiry) }
        return try await publishingPorts(of: created, until: deadline)
    }

    /// `running` with this process's proxies of the fixture's ports, once their host ports
    /// listen (a client connects at once after the start).
    private func publishingPorts(of running: RunningFixture, until deadline: ContinuousClock.Instant) async throws -> RunningFixture {
        guard !configuration.ports.isEmpty else { return running }
        var running = running
        running.forwarders = try running.container.publish(configuration.ports)
        do {
            let ports = Set(running.forwarders.filter { $0.mapping.transport == .tcp }.map(\.hostPort))
            var pause = Duration.milliseconds(1)
            while !ports.isSubset(of: try ProcessView.hostListeningTCPPorts()) {
                guard ContinuousClock.now < deadline else {
                    throw FixtureError(code: .timedOut, container: running.container.name,
                                       detail: "the host ports \(ports.sorted()) of its published ports did not listen",
                                       state: running.container.state)
                }
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(50))
            }
        } catch {
            running.forwarders.forEach { $0.stop() }
            throw error
        }
        return running
    }
}
