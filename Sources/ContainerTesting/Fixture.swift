public import Containers
import Glibc
import SystemSupport

/// A container a test needs, as a value: what to run, what to copy in, and when it is ready.
///
/// A fixture describes; ``withFixture(_:in:_:)`` (or ``start(in:)``, the Swift Testing trait
/// ``FixtureTrait`` and ``XCTest/XCTestCase/startFixture(_:in:)``) creates the container,
/// copies the files in, starts it and waits until ``waitStrategy`` says it is ready, within
/// ``startupTimeout``.
///
/// ```swift
/// let web = Fixture(
///     image: "busybox", command: ["httpd", "-f", "-p", "8080", "-h", "/www"],
///     files: [.text("hello\n", at: "/www/index.html")],
///     ports: [8080],
///     waitingFor: .listeningPort(8080))
/// ```
public struct Fixture: Sendable {
    /// What the container is: image, command, environment, network, limits and every other
    /// `docker run` option, as `ContainerConfiguration` holds them.
    public var configuration: ContainerConfiguration
    /// Files copied into the container after it is created and before it starts.
    public var files: [FixtureFile]
    /// When the container counts as ready.
    public var waitStrategy: WaitStrategy
    /// How long creating, starting and waiting for ready may take in all; a wait strategy's
    /// own ``WaitStrategy/timeout(_:)`` can only shorten it.
    public var startupTimeout: Duration
    /// How long a fixture reused across test runs is kept after its last use; `nil` (the
    /// default) for a fixture of this test alone. Set by ``reused(for:)``.
    public var reuseTimeToLive: Duration?

    /// Creates a fixture.
    ///
    /// - Parameters:
    ///   - image: The image reference (`busybox`, `127.0.0.1:5000/app:1`) or image id.
    ///   - command: Replaces the image's command; `nil` keeps it.
    ///   - environment: `KEY=value` pairs, merged over the image's.
    ///   - files: Files copied in before the container starts.
    ///   - ports: Container ports to publish, each on `127.0.0.1` at a free host port
    ///     (``RunningFixture/mappedPort(_:transport:)`` tells which).
    ///   - network: The network; `nil` is the default bridge network when `ports` is not
    ///     empty (publishing needs one), else a network namespace with only `lo`.
    ///   - resources: cgroup limits (memory, CPUs, pids).
    ///   - waitStrategy: When the container counts as ready; by default, as soon as its
    ///     process runs.
    ///   - startupTimeout: How long starting may take in all.
    public init(
        image: String, command: [String]? = nil, environment: [String] = [], files: [FixtureFile] = [],
        ports: [UInt16] = [], network: ContainerNetwork? = nil, resources: CgroupResources = CgroupResources(),
        waitingFor waitStrategy: WaitStrategy = .running, startupTimeout: Duration = .seconds(60)
    ) {
        var configuration = ContainerConfiguration(image: image, command: command)
        configuration.environment = environment
        configuration.ports = ports.map { PortMapping(hostIP: IPv4Address(0x7F00_0001), hostPort: 0, containerPort: $0) }
        configuration.network = network ?? (ports.isEmpty ? .none : .bridge([]))
        configuration.resources = resources
        self.init(configuration: configuration, files: files, waitingFor: waitStrategy, startupTimeout: startupTimeout)
    }

    /// Creates a fixture from a full container configuration.
    ///
    /// - Parameters:
    ///   - configuration: What the container is.
    ///   - files: Files copied in before the container starts.
    ///   - waitStrategy: When the container counts as ready.
    ///   - startupTimeout: How long starting may take in all.
    public init(configuration: ContainerConfiguration, files: [FixtureFile] = [],
                waitingFor waitStrategy: WaitStrategy = .running, startupTimeout: Duration = .seconds(60)) {
        self.configuration = configuration
        self.files = files
        self.waitStrategy = waitStrategy
        self.startupTimeout = startupTimeout
    }

    /// Creates the container, copies ``files`` in, starts it and waits until it is ready.
    ///
    /// A fixture with ``reused(for:)`` uses a running container made for the same
    /// configuration when there is one. Any other container is labelled with this process's
    /// session (`ContainerRuntime.sessionLabel`):
    /// should the test process be killed before it removes the container, the container dies
    /// with it and the next runtime opened on the root removes the rest.
    ///
    /// The caller owns the result and removes it with ``RunningFixture/remove()``;
    /// ``withFixture(_:in:_:)`` does that for you. When anything fails, or the task is
    /// cancelled, the container is removed before this throws.
    ///
    /// - Parameter runtime: The runtime the container belongs to.
    /// - Returns: The ready fixture.
    /// - Throws: ``FixtureError`` when it is not ready in time or can never be;
    ///   `ContainerError` when it cannot be created, copied into or started;
    ///   `CancellationError` when the task is cancelled.
    public func start(in runtime: ContainerRuntime) async throws -> RunningFixture {
        if let reuseTimeToLive { return try await startReused(in: runtime, timeToLive: reuseTimeToLive) }
        let deadline = ContinuousClock.now.advanced(by: startupTimeout)
        var configuration = configuration
        configuration.labels[ContainerRuntime.sessionLabel] = ContainerRuntime.currentSession
        return try await createAndStart(configuration, in: runtime, until: deadline)
    }

    /// Creates the container, runs `prepare` on it, copies ``files`` in, starts it and waits
    /// until it is ready by `deadline`; removes it when any of that fails or the task is
    /// cancelled.
    func createAndStart(
        _ configuration: ContainerConfiguration, in runtime: ContainerRuntime, until deadline: ContinuousClock.Instant,
        prepare: (Container) throws -> Void = { _ in }
    ) async throws -> RunningFixture {
        let container = try await runtime.create(configuration)
        do {
            try prepare(container)
            try copyFiles(into: container, of: runtime)
            try Task.checkCancellation()
            try await container.start()
            try await waitStrategy.wait(for: container, until: deadline)
            return RunningFixture(container: container, fixture: self)
        } catch {
            try? await removeOutsideCancellation(container)
            throw error
        }
    }

    /// Copies ``files`` in; content given as bytes goes through a host file in a private
    /// temporary directory (made at the first such file, in the session's directory, so that
    /// a killed test leaves it to the next session's sweep), which the container's copy reads.
    func copyFiles(into container: Container, of runtime: ContainerRuntime) throws {
        var staging: String?
        defer {
            if let staging {
                try? removeTree(staging)
                _ = rmdir(runtime.sessionDirectory)  // fails, harmlessly, while the session keeps other files
            }
        }
        for (index, file) in files.enumerated() {
            switch file.content {
            case .hostPath(let source):
                try container.copyIn(fromHostPath: source, to: file.path, creatingParents: true)
            case .bytes(let bytes, let mode):
                let root: String
                if let staging {
                    root = staging
                } else {
                    try makeDirectories(runtime.sessionDirectory, mode: 0o700)
                    var template = Array((runtime.sessionDirectory + "/files-XXXXXX").utf8CString)
                    guard let made = mkdtemp(&template) else { throw SystemError.current("make a directory for fixture files") }
                    root = String(cString: made)
                    staging = root
                }
                // Named after the destination: the copy creates a missing file under the name it reads.
                let directory = "\(root)/\(index)"
                let source = "\(directory)/\(file.path.split(separator: "/").last.map(String.init) ?? "file")"
                try makeDirectories(directory, mode: 0o700)
                try writeAtomically(source, bytes, mode: mode_t(mode), durable: false)
                try container.copyIn(fromHostPath: source, to: file.path, creatingParents: true)
            }
        }
    }
}

/// A file a ``Fixture`` copies into its container before it starts.
///
/// Missing directories above the destination are made (mode 0755), as Testcontainers does; a
/// missing destination file is created, an existing one replaced.
public struct FixtureFile: Sendable, Hashable {
    /// Where the content comes from.
    public enum Content: Sendable, Hashable {
        /// These bytes, as a file with this mode.
        case bytes([UInt8], mode: Int)
        /// A file or directory on the host, copied as `docker cp` copies it.
        case hostPath(String)
    }

    /// The destination in the container.
    public var path: String
    /// What is copied there.
    public var content: Content

    /// Creates a file description.
    ///
    /// - Parameters:
    ///   - path: The destination in the container.
    ///   - content: What is copied there.
    public init(path: String, content: Content) {
        self.path = path
        self.content = content
    }

    /// A file with these bytes.
    ///
    /// - Parameters:
    ///   - bytes: The content.
    ///   - path: The destination in the container.
    ///   - mode: Its permission bits.
    /// - Returns: The file.
    public static func bytes(_ bytes: [UInt8], at path: String, mode: Int = 0o644) -> FixtureFile {
        FixtureFile(path: path, content: .bytes(bytes, mode: mode))
    }

    /// A file with this text, in UTF-8.
    ///
    /// - Parameters:
    ///   - text: The content.
    ///   - path: The destination in the container.
    ///   - mode: Its permission bits (`0o755` for a script).
    /// - Returns: The file.
    public static func text(_ text: String, at path: String, mode: Int = 0o644) -> FixtureFile {
        .bytes(Array(text.utf8), at: path, mode: mode)
    }

    /// A file or directory of the host.
    ///
    /// - Parameters:
    ///   - hostPath: The source on the host; relative to the working directory unless absolute.
    ///   - path: The destination in the container.
    /// - Returns: The file.
    public static func hostPath(_ hostPath: String, at path: String) -> FixtureFile {
        FixtureFile(path: path, content: .hostPath(hostPath))
    }
}
