public import Containers
import Images

/// A PostgreSQL server as a fixture: a fresh cluster made at the first start, a user with a
/// password, a database, and a wait that ends when the server accepts connections.
///
/// By default the image is built from the host's Debian `postgresql` package (15; `apt-get
/// install postgresql`), with no registry; `image: .reference("docker.io/library/postgres:16")`
/// runs the official image instead, configured through its `POSTGRES_*` variables.
///
/// ```swift
/// let postgres = PostgresFixture(user: "app", password: "secret", database: "orders")
/// try await withFixture(postgres) { db in
///     let url = try postgres.connectionURL(of: db)   // postgres://app:secret@127.0.0.1:41623/orders
///     // psql, PostgresNIO, … here
/// }
/// ```
///
/// The server runs as the unprivileged user `postgres` (uid 999), as PostgreSQL requires,
/// with `fsync` and `full_page_writes` off: a test database trades durability for speed.
/// `synchronous_commit` stays on: without `fsync` it costs a `write` per commit, not a disk
/// flush, and it puts every committed transaction in the data directory's files at once, which
/// is what ``RunningFixture/snapshot()`` copies (with it off, a transaction committed in the
/// last few hundred milliseconds would be in the server's memory only, and missing from a
/// snapshot). ``settings`` changes any server setting.
public struct PostgresFixture: FixtureModule {
    /// Where the image comes from.
    public var image: ModuleImage
    /// The superuser made at start.
    public var user: String
    /// The superuser's password (`scram-sha-256`).
    public var password: String
    /// The database made at start.
    public var database: String
    /// Server settings, passed as `-c name=value`.
    public var settings: [String: String]
    /// The network; `nil` is the default bridge network.
    public var network: ContainerNetwork?
    /// How long starting, including `initdb`, may take.
    public var startupTimeout: Duration

    /// The reference of the image built from the host's package.
    static let hostReference = "berth.local/postgres:15-host"
    /// The port PostgreSQL listens on in the container.
    public static let port: UInt16 = 5432
    private static let binaries = "/usr/lib/postgresql/15/bin"
    private static let dataDirectory = "/var/lib/postgresql/data"
    private static let uid: UInt32 = 999

    /// Describes a PostgreSQL fixture.
    ///
    /// - Parameters:
    ///   - image: Where the image comes from.
    ///   - user: The superuser made at start.
    ///   - password: Its password.
    ///   - database: The database made at start.
    ///   - settings: Server settings (`-c name=value`), over the fast, non-durable defaults.
    ///   - network: The network; `nil` is the default bridge network.
    ///   - startupTimeout: How long starting may take.
    public init(image: ModuleImage = .hostPackages, user: String = "test", password: String = "test", database: String = "test",
                settings: [String: String] = [:], network: ContainerNetwork? = nil, startupTimeout: Duration = .seconds(60)) {
        self.image = image
        self.user = user
        self.password = password
        self.database = database
        self.settings = ["fsync": "off", "full_page_writes": "off"].merging(settings) { $1 }
        self.network = network
        self.startupTimeout = startupTimeout
    }

    /// The PostgreSQL server and `initdb` from `/usr/lib/postgresql/15`, their libraries, the
    /// share directory, the UTC zone, `/bin/sh` for `initdb`, and the `postgres` user.
    static func hostImageContent() -> HostImageContent {
        var content = HostImageContent(
            executables: ["\(binaries)/postgres", "\(binaries)/initdb", "/bin/sh"]
                + ["plpgsql.so", "dict_snowball.so", "pgoutput.so", "libpqwalreceiver.so"].map { "/usr/lib/postgresql/15/lib/" + $0 },
            files: ["/usr/share/postgresql/15", "/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/UTC"])
        content.users = [HostImageContent.User("postgres", id: uid, home: "/var/lib/postgresql")]
        content.directories = [HostImageContent.Directory("/var/lib/postgresql", mode: 0o755, owner: uid)]
        content.config.env = ["PATH=\(binaries):/usr/sbin:/usr/bin:/sbin:/bin", "TZ=UTC", "PGDATA=\(dataDirectory)"]
        content.config.cmd = ["postgres"]
        return content
    }

    /// The fixture: for the host's package, `initdb` then `postgres` as user `postgres`; for
    /// an image reference, the image's own entry point with `POSTGRES_USER`,
    /// `POSTGRES_PASSWORD` and `POSTGRES_DB`.
    ///
    /// - Parameter runtime: The runtime it will run in.
    /// - Returns: The fixture, ready when the server logs that it accepts connections and
    ///   listens on port 5432.
    /// - Throws: `ImageError` when the host's package is missing or its image cannot be built.
    public func fixture(in runtime: ContainerRuntime) async throws -> Fixture {
        let reference = try await image.prepare(in: runtime, hostReference: Self.hostReference, content: Self.hostImageContent)
        let flags = settings.sorted { $0.key < $1.key }.flatMap { ["-c", "\($0.key)=\($0.value)"] }
        let ready = WaitStrategy.logLine(matching: "database system is ready to accept connections", times: image.isReference ? 2 : 1)
        var fixture: Fixture
        if image.isReference {
            fixture = Fixture(image: reference, command: ["postgres"] + flags,
                              environment: ["POSTGRES_USER=\(user)", "POSTGRES_PASSWORD=\(password)", "POSTGRES_DB=\(database)"],
                              ports: [Self.port], network: network, startupTimeout: startupTimeout)
        } else {
            // initdb, a superuser with the password, every host allowed with it, the database
            // made in single-user mode, then the server; only shell built-ins besides them. A
            // cluster already there (a restart, a restored snapshot) is started as it is.
            let script = """
                set -e
                if [ ! -s "$PGDATA/PG_VERSION" ]; then
                    initdb --no-sync -E UTF8 --locale=C -U "$1" --pwfile=/tmp/postgres-password -A scram-sha-256 >/dev/null
                    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
                    if [ "$2" != postgres ]; then
                        echo "CREATE DATABASE \\"$2\\"" | postgres --single -D "$PGDATA" postgres >/dev/null
                    fi
                fi
                shift 2
                exec postgres -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"
                """
            fixture = Fixture(image: reference, command: ["/bin/sh", "-c", script, "postgres-fixture", user, database] + flags,
                              files: [.text(password + "\n", at: "/tmp/postgres-password")],
                              ports: [Self.port], network: network, startupTimeout: startupTimeout)
            fixture.configuration.user = "\(Self.uid):\(Self.uid)"
        }
        fixture.waitStrategy = .allOf([ready, .listeningPort(Self.port)])
        return fixture
    }

    /// The connection URL, `postgres://user:password@host:port/database`, with the host and
    /// port at which the test process reaches the server (``RunningFixture/endpoint(_:)``).
    ///
    /// - Parameter running: The running fixture.
    /// - Returns: The URL, for `psql`, libpq and PostgresNIO.
    /// - Throws: ``FixtureError`` when the server's port is not reachable from the host.
    public func connectionURL(of running: RunningFixture) throws(FixtureError) -> String {
        let (host, port) = try running.endpoint(Self.port)
        return "postgres://\(percentEncoded(user)):\(percentEncoded(password))@\(host):\(port)/\(percentEncoded(database))"
    }
}

/// `text` with everything but unreserved URL characters percent-encoded.
func percentEncoded(_ text: String) -> String {
    text.utf8.map { byte -> String in
        let scalar = Unicode.Scalar(byte)
        if byte < 0x80 && (scalar.properties.isAlphabetic || ("0"..."9").contains(Character(scalar)) || "-._~".unicodeScalars.contains(scalar)) {
            return String(Character(scalar))
        }
        return "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
    }.joined()
}
