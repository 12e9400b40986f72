public import Containers
import Images

/// A Redis server as a fixture: no persistence, an optional password, ready when it listens.
///
/// By default the image is built from the host's Debian `redis-server` package (`apt-get
/// install redis-server`); `image: .reference("docker.io/library/redis:7")` runs the official
/// image with the same command.
///
/// ```swift
/// let redis = RedisFixture(password: "secret")
/// try await withFixture(redis) { cache in
///     let url = try redis.connectionURL(of: cache)   // redis://default:secret@127.0.0.1:40411/0
/// }
/// ```
public struct RedisFixture: FixtureModule {
    /// Where the image comes from.
    public var image: ModuleImage
    /// The password clients authenticate with (`requirepass`); `nil` for none.
    public var password: String?
    /// More `redis-server` arguments, such as `["--maxmemory", "64mb"]`.
    public var arguments: [String]
    /// The network; `nil` is the default bridge network.
    public var network: ContainerNetwork?
    /// How long starting may take.
    public var startupTimeout: Duration

    /// The reference of the image built from the host's package.
    static let hostReference = "berth.local/redis:host"
    /// The port Redis listens on in the container.
    public static let port: UInt16 = 6379

    /// Describes a Redis fixture.
    ///
    /// - Parameters:
    ///   - image: Where the image comes from.
    ///   - password: The password clients authenticate with; `nil` for none.
    ///   - arguments: More `redis-server` arguments.
    ///   - network: The network; `nil` is the default bridge network.
    ///   - startupTimeout: How long starting may take.
    public init(image: ModuleImage = .hostPackages, password: String? = nil, arguments: [String] = [],
                network: ContainerNetwork? = nil, startupTimeout: Duration = .seconds(30)) {
        self.image = image
        self.password = password
        self.arguments = arguments
        self.network = network
        self.startupTimeout = startupTimeout
    }

    /// `/usr/bin/redis-server` with its libraries.
    static func hostImageContent() -> HostImageContent {
        var content = HostImageContent(executables: ["/usr/bin/redis-server"])
        content.directories = [HostImageContent.Directory("/data")]
        content.config.workingDir = "/data"
        content.config.cmd = ["redis-server"]
        return content
    }

    /// The fixture: `redis-server` on port 6379 of every address, with no snapshots and no
    /// append-only file.
    ///
    /// - Parameter runtime: The runtime it will run in.
    /// - Returns: The fixture, ready when port 6379 listens inside the container.
    /// - Throws: `ImageError` when the host's package is missing or its image cannot be built.
    public func fixture(in runtime: ContainerRuntime) async throws -> Fixture {
        let reference = try await image.prepare(in: runtime, hostReference: Self.hostReference, content: Self.hostImageContent)
        let command = ["redis-server", "--port", "\(Self.port)", "--bind", "0.0.0.0", "--protected-mode", "no",
                       "--save", "", "--appendonly", "no"] + (password.map { ["--requirepass", $0] } ?? []) + arguments
        return Fixture(image: reference, command: command, ports: [Self.port], network: network,
                       waitingFor: .listeningPort(Self.port), startupTimeout: startupTimeout)
    }

    /// The connection URL, `redis://[default:password@]host:port/0` (the user `default` of
    /// Redis 6's ACLs, which `redis-cli` needs spelled out), with the host and port at which the
    /// test process reaches the server (``RunningFixture/endpoint(_:)``).
    ///
    /// - Parameter running: The running fixture.
    /// - Returns: The URL, for `redis-cli -u` and client libraries.
    /// - Throws: ``FixtureError`` when the server's port is not reachable from the host.
    public func connectionURL(of running: RunningFixture) throws(FixtureError) -> String {
        let (host, port) = try running.endpoint(Self.port)
        return "redis://\(password.map { "default:\(percentEncoded($0))@" } ?? "")\(host):\(port)/0"
    }
}
