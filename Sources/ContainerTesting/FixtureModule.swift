public import Containers
import Images

/// Something that makes a ``Fixture``: a fixture itself, or a ready-made one for a well-known
/// service (``PostgresFixture``, ``RedisFixture``, ``NginxFixture``).
///
/// A module knows its service's image, command, credentials and the wait strategy that tells
/// when it really answers; ``fixture(in:)`` turns it into a ``Fixture``, making the image first
/// when it comes from the host's packages. ``withFixture(_:in:_:)`` and
/// `XCTestCase.startFixture(_:in:)` take any of them.
public protocol FixtureModule: Sendable {
    /// The fixture, with its image ready in `runtime`'s store.
    ///
    /// - Parameter runtime: The runtime the fixture will run in.
    /// - Returns: The fixture.
    /// - Throws: `ImageError` when the image cannot be built from the host's files.
    func fixture(in runtime: ContainerRuntime) async throws -> Fixture
}

/// Where a module's image comes from.
///
/// With no registry in reach (a CI runner behind a firewall, this machine), ``hostPackages``
/// builds the image from the service as the host's Debian packages installed it; where a
/// registry is reachable, ``reference(_:)`` runs the official image, pulled on first use:
///
/// ```swift
/// let offline = PostgresFixture()                                              // apt-get install postgresql
/// let official = PostgresFixture(image: .reference("docker.io/library/postgres:16"))
/// ```
public enum ModuleImage: Sendable, Hashable {
    /// An image Berth builds once per image store from the host's installed package (with
    /// `ImageStore.makeImage(from:as:)`), under the module's own reference.
    case hostPackages
    /// An image by reference, such as the official `docker.io/library/redis:7`.
    case reference(String)
}

extension ModuleImage {
    /// The image reference a fixture runs: for ``hostPackages``, `reference`, built from
    /// `content` when the store does not have it yet.
    func prepare(in runtime: ContainerRuntime, hostReference: String, content: () -> HostImageContent) async throws -> String {
        if case .reference(let reference) = self { return reference }
        if (try? runtime.images.image(hostReference)) == nil {
            try await runtime.images.makeImage(from: content(), as: try ImageReference(parsing: hostReference))
        }
        return hostReference
    }

    /// Whether the image is the official one, whose entry point does its own set-up.
    var isReference: Bool {
        if case .reference = self { return true }
        return false
    }
}

extension Fixture: FixtureModule {
    /// The fixture itself: a ``Fixture`` goes wherever a module does.
    ///
    /// - Parameter runtime: Unused.
    /// - Returns: `self`.
    public func fixture(in runtime: ContainerRuntime) async throws -> Fixture { self }
}

extension RunningFixture {
    /// The host and port at which a container port is reached from the test process: the
    /// published port at ``host`` when `port` is published, else the container's ``address``.
    ///
    /// - Parameter port: The port inside the container.
    /// - Returns: The host and port.
    /// - Throws: ``FixtureError`` when the port is not published and the container has no
    ///   address on a bridge network.
    public func endpoint(_ port: UInt16) throws(FixtureError) -> (host: String, port: UInt16) {
        if let mapped = try? mappedPort(port) { return (host, mapped) }
        guard let address else { _ = try mappedPort(port); return (host, port) }
        return (address, port)
    }
}
