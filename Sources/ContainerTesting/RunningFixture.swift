public import Containers
import Networking

/// A started, ready fixture: its container and the ways to reach it.
///
/// ```swift
/// try await withFixture(web) { web in
///     let url = "http://\(web.host):\(try web.mappedPort(8080))/"
///     // … talk to it …
/// }
/// ```
public struct RunningFixture: Sendable {
    /// The container.
    public let container: Container
    /// The fixture it was started from.
    public let fixture: Fixture
    /// The proxies of a reused fixture's ports, which this process publishes
    /// (`Container.publish(_:)`): its detached container has none of its own.
    var forwarders: [PortForwarder] = []

    /// The ports published: the container's own, or the proxies this process runs for it.
    var publishedPorts: [PortMapping] {
        container.state.publishedPorts + forwarders.map { forwarder in
            var mapping = forwarder.mapping
            mapping.hostPort = forwarder.hostPort
            return mapping
        }
    }

    /// The host address at which published ports are reached: the address a port was
    /// published on, or `127.0.0.1` for ports published on every address.
    public var host: String {
        let published = publishedPorts.first?.hostIP ?? IPv4Address(0)
        return published == IPv4Address(0) ? "127.0.0.1" : "\(published)"
    }

    /// The container's IPv4 address on its first bridge network (by name), which the host and
    /// the containers on that network reach directly; `nil` when it is on none.
    public var address: String? {
        container.state.addresses.sorted { $0.key < $1.key }.first?.value
    }

    /// The host port a container port is published at. A reused fixture's ports
    /// (``Fixture/reused(for:)``) are published by each process that uses it, each at a host
    /// port of its own.
    ///
    /// - Parameters:
    ///   - containerPort: The port inside the container.
    ///   - transport: TCP (the default) or UDP.
    /// - Returns: The host port, reached at ``host``.
    /// - Throws: ``FixtureError`` (``FixtureError/Code/notPublished``) when the port is not published.
    public func mappedPort(_ containerPort: UInt16, transport: PortMapping.TransportProtocol = .tcp) throws(FixtureError) -> UInt16 {
        let published = publishedPorts
        guard let mapping = published.first(where: { $0.containerPort == containerPort && $0.transport == transport }) else {
            throw FixtureError(code: .notPublished, container: container.name,
                               detail: "port \(containerPort)/\(transport.rawValue) is not published (published: \(published.map(\.description)))",
                               state: container.state)
        }
        return mapping.hostPort
    }

    /// Stops and removes the container, also when the calling task is cancelled, and deletes
    /// its snapshots (``snapshot()``). A fixture reused across runs (``Fixture/reused(for:)``)
    /// keeps running: only its snapshots are deleted and this process's proxies of its ports
    /// stopped.
    ///
    /// - Throws: `ContainerError` when the removal fails.
    public func remove() async throws(ContainerError) {
        forwarders.forEach { $0.stop() }
        if fixture.reuseTimeToLive == nil { try await removeOutsideCancellation(container) }
        removeSnapshots()
    }
}

/// Starts `fixture`, runs `body` with it, and removes the container, also when starting or
/// `body` throws and when the task is cancelled.
///
/// ```swift
/// try await withFixture(web) { web in
///     let url = "http://\(web.host):\(try web.mappedPort(8080))/"
///     // … talk to it …
/// }   // removed here
/// ```
///
/// - Parameters:
///   - fixture: What to start: a ``Fixture``, or a module such as ``PostgresFixture``.
///   - runtime: The runtime; `nil` is `ContainerRuntime.shared()`.
///   - body: What to do with the ready fixture.
/// - Returns: What `body` returns.
/// - Throws: What ``FixtureModule/fixture(in:)``, ``Fixture/start(in:)`` or `body` throws, or
///   the removal's `ContainerError` after a `body` that returned.
public func withFixture<T: Sendable>(
    _ fixture: some FixtureModule, in runtime: ContainerRuntime? = nil, _ body: (RunningFixture) async throws -> T
) async throws -> T {
    let runtime = try runtime ?? ContainerRuntime.shared()
    return try await withFixtures([try await fixture.fixture(in: runtime)], in: runtime) { running in try await body(running[0]) }
}

/// Starts several fixtures at once, runs `body` with them, and removes every container, as
/// ``withFixture(_:in:_:)`` does for one.
///
/// The fixtures start in parallel; when one fails, the others are cancelled and every
/// container is removed before this throws the first error.
///
/// - Parameters:
///   - fixtures: What to start.
///   - runtime: The runtime; `nil` is `ContainerRuntime.shared()`.
///   - body: What to do with the ready fixtures, in the order of `fixtures`.
/// - Returns: What `body` returns.
/// - Throws: What ``Fixture/start(in:)`` or `body` throws, or the removal's
///   `ContainerError` after a `body` that returned.
public func withFixtures<T: Sendable>(
    _ fixtures: [Fixture], in runtime: ContainerRuntime? = nil, _ body: ([RunningFixture]) async throws -> T
) async throws -> T {
    let runtime = try runtime ?? ContainerRuntime.shared()
    let running = try await startAll(fixtures, in: runtime)
    let result: T
    do {
        result = try await body(running)
    } catch {
        for fixture in running { try? await fixture.remove() }
        throw error
    }
    var failure: ContainerError?
    for fixture in running {
        do { try await fixture.remove() } catch { failure = failure ?? error }
    }
    if let failure { throw failure }
    return result
}

/// Starts `fixtures` in parallel; on the first failure cancels the rest and removes what started.
func startAll(_ fixtures: [Fixture], in runtime: ContainerRuntime) async throws -> [RunningFixture] {
    try await withThrowingTaskGroup(of: (Int, RunningFixture).self) { group in
        for (index, fixture) in fixtures.enumerated() {
            group.addTask { (index, try await fixture.start(in: runtime)) }
        }
        var started: [Int: RunningFixture] = [:]
        var failure: (any Error)?
        while let result = await group.nextResult() {
            switch result {
            case .success(let (index, running)):
                started[index] = running
            case .failure(let error):
                if failure == nil { failure = error }
                group.cancelAll()
            }
        }
        if let failure {
            for running in started.values { try? await running.remove() }
            throw failure
        }
        return fixtures.indices.compactMap { started[$0] }
    }
}

/// Removes `container` in a task of its own: a cancelled caller still gets its container
/// stopped and removed, with the stop's grace period intact.
func removeOutsideCancellation(_ container: Container) async throws(ContainerError) {
    let result = await Task { () async -> Result<Void, ContainerError> in
        do throws(ContainerError) { try await container.remove(force: true) } catch { return .failure(error) }
        return .success(())
    }.value
    try result.get()
}
