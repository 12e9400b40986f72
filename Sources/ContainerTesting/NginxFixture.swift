public import Containers
import Images

/// An nginx web server as a fixture, serving files copied into its document root, or with a
/// configuration of your own.
///
/// By default the image is built from the host's Debian `nginx` package (`apt-get install
/// nginx`); `image: .reference("docker.io/library/nginx:1.27")` runs the official image, which
/// serves the same document root.
///
/// ```swift
/// let web = NginxFixture(files: [.text("<h1>hi</h1>\n", at: "/usr/share/nginx/html/index.html")])
/// try await withFixture(web) { server in
///     let url = try web.url(of: server, path: "/index.html")   // http://127.0.0.1:40233/index.html
/// }
/// ```
public struct NginxFixture: FixtureModule {
    /// Where the image comes from.
    public var image: ModuleImage
    /// Files copied in before the start, such as pages under ``documentRoot``.
    public var files: [FixtureFile]
    /// The whole `nginx.conf`; `nil` serves ``documentRoot`` on port 80 (the host's package
    /// gets a minimal configuration that does, the official image keeps its own).
    public var configuration: String?
    /// The network; `nil` is the default bridge network.
    public var network: ContainerNetwork?
    /// How long starting may take.
    public var startupTimeout: Duration

    /// The reference of the image built from the host's package.
    static let hostReference = "berth.local/nginx:host"
    /// The port nginx listens on in the container.
    public static let port: UInt16 = 80
    /// The directory served: `/usr/share/nginx/html`, as in the official image.
    public static let documentRoot = "/usr/share/nginx/html"

    /// The configuration the host's package runs with unless ``configuration`` replaces it:
    /// in the foreground, logs to the container's output, temporary files in `/tmp`.
    static let hostConfiguration = """
        daemon off;
        user nobody;
        worker_processes 1;
        error_log stderr notice;
        pid /tmp/nginx.pid;
        events { worker_connections 256; }
        http {
            include /etc/nginx/mime.types;
            access_log /dev/stdout;
            client_body_temp_path /tmp/client_body;
            proxy_temp_path /tmp/proxy;
            fastcgi_temp_path /tmp/fastcgi;
            uwsgi_temp_path /tmp/uwsgi;
            scgi_temp_path /tmp/scgi;
            server {
                listen 80;
                root \(documentRoot);
            }
        }

        """

    /// Describes an nginx fixture.
    ///
    /// - Parameters:
    ///   - image: Where the image comes from.
    ///   - files: Files copied in before the start.
    ///   - configuration: The whole `nginx.conf`, or `nil` for the default.
    ///   - network: The network; `nil` is the default bridge network.
    ///   - startupTimeout: How long starting may take.
    public init(image: ModuleImage = .hostPackages, files: [FixtureFile] = [], configuration: String? = nil,
                network: ContainerNetwork? = nil, startupTimeout: Duration = .seconds(30)) {
        self.image = image
        self.files = files
        self.configuration = configuration
        self.network = network
        self.startupTimeout = startupTimeout
    }

    /// `/usr/sbin/nginx` with its libraries, `mime.types`, and an empty document root.
    static func hostImageContent() -> HostImageContent {
        var content = HostImageContent(executables: ["/usr/sbin/nginx"], files: ["/etc/nginx/mime.types"])
        content.directories = [HostImageContent.Directory(documentRoot), HostImageContent.Directory("/var/log/nginx")]
        content.config.cmd = ["nginx", "-e", "stderr", "-c", "/etc/nginx/nginx.conf"]
        return content
    }

    /// The fixture: `nginx` in the foreground on port 80.
    ///
    /// - Parameter runtime: The runtime it will run in.
    /// - Returns: The fixture, ready when port 80 listens inside the container.
    /// - Throws: `ImageError` when the host's package is missing or its image cannot be built.
    public func fixture(in runtime: ContainerRuntime) async throws -> Fixture {
        let reference = try await image.prepare(in: runtime, hostReference: Self.hostReference, content: Self.hostImageContent)
        let config = configuration ?? (image.isReference ? nil : Self.hostConfiguration)
        return Fixture(image: reference, files: files + (config.map { [.text($0, at: "/etc/nginx/nginx.conf")] } ?? []),
                       ports: [Self.port], network: network, waitingFor: .listeningPort(Self.port), startupTimeout: startupTimeout)
    }

    /// The URL of `path` on the server, with the host and port at which the test process
    /// reaches it (``RunningFixture/endpoint(_:)``).
    ///
    /// - Parameters:
    ///   - running: The running fixture.
    ///   - path: The path, starting with `/`.
    /// - Returns: `http://host:port/path`.
    /// - Throws: ``FixtureError`` when the server's port is not reachable from the host.
    public func url(of running: RunningFixture, path: String = "/") throws(FixtureError) -> String {
        let (host, port) = try running.endpoint(Self.port)
        return "http://\(host):\(port)\(path)"
    }
}
