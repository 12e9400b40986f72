import AsyncHTTPClient
import Containers
import Foundation
import ContainerTesting
import Glibc
import Testing
import TestSupport
import XCTest

/// `psql` against a PostgreSQL fixture: the trimmed output of one command.
func psql(_ url: String, _ command: String) throws -> String {
    let result = try runProgram(["psql", url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", command])
    guard result.status == 0 else { throw TestSupportError("psql \(command): \(result.output)") }
    return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// `redis-cli -u url` with `arguments`: the trimmed reply.
func redisCLI(_ url: String, _ arguments: [String]) throws -> String {
    let result = try runProgram(["redis-cli", "--no-auth-warning", "-u", url] + arguments)
    guard result.status == 0 else { throw TestSupportError("redis-cli \(arguments): \(result.output)") }
    return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The modules with images built from the host's Debian packages, reached with real clients.
@Suite(.serialized)
struct ModuleTests {
    @Test func postgresMakesItsUserAndDatabaseAndAnswersPsql() async throws {
        let runtime = try await TestRuntime.shared()
        let before = LeakSnapshot.take(stateDirectories: [runtime.root + "/containers"])
        try await withTestNetwork(runtime) { network in
            let postgres = PostgresFixture(user: "app", password: "p@ss word", database: "orders", network: .bridge([network]))
            try await withFixture(postgres, in: runtime) { db in
                let url = try postgres.connectionURL(of: db)
                #expect(url.hasPrefix("postgres://app:p%40ss%20word@"))
                #expect(try psql(url, "select current_user || ' ' || current_database()") == "app orders")
                _ = try psql(url, "create table t (n int); insert into t select generate_series(1, 100)")
                #expect(try psql(url, "select sum(n) from t") == "5050")
                let pid = try #require(db.container.state.pid)
                let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
                #expect(status.contains("\nUid:\t999\t"), "the server does not run as root")
                var wrong = url
                wrong.replace("p%40ss%20word", with: "nope")
                #expect(throws: TestSupportError.self) { try psql(wrong, "select 1") }
            }
        }
        let leaks = await LeakSnapshot.expectClean(since: before)
        #expect(leaks.isEmpty, "\(leaks)")
    }

    @Test func redisAsksForItsPasswordAndAnswersRedisCLI() async throws {
        let runtime = try await TestRuntime.shared()
        try await withTestNetwork(runtime) { network in
            let redis = RedisFixture(password: "secret", network: .bridge([network]))
            try await withFixture(redis, in: runtime) { cache in
                let url = try redis.connectionURL(of: cache)
                let set = try redisCLI(url, ["SET", "greeting", "hello"])
                #expect(set == "OK", "\(url): \(set)")
                #expect(try redisCLI(url, ["GET", "greeting"]) == "hello")
                let (host, port) = try cache.endpoint(RedisFixture.port)
                #expect(try redisCLI("redis://\(host):\(port)/0", ["GET", "greeting"]).contains("NOAUTH"))
            }
        }
    }

    @Test func nginxServesTheFilesCopiedIntoItsDocumentRoot() async throws {
        let runtime = try await TestRuntime.shared()
        try await withTestNetwork(runtime) { network in
            let nginx = NginxFixture(files: [.text("<h1>fixture</h1>\n", at: NginxFixture.documentRoot + "/index.html")],
                                     network: .bridge([network]))
            try await withFixture(nginx, in: runtime) { web in
                let response = try await HTTPClient.shared.get(url: try nginx.url(of: web, path: "/index.html")).get()
                #expect(response.status.code == 200)
                #expect(response.body.map { String(buffer: $0) } == "<h1>fixture</h1>\n")
                #expect(response.headers["Content-Type"].first == "text/html")
            }
        }
    }

    /// With an image reference, the official image's own set-up is configured instead (not
    /// started here: no registry is reachable).
    @Test func anOfficialImageReferenceIsConfiguredThroughItsVariables() async throws {
        let runtime = try await TestRuntime.shared()
        let postgres = try await PostgresFixture(image: .reference("docker.io/library/postgres:16"), user: "u", password: "p", database: "d")
            .fixture(in: runtime)
        #expect(postgres.configuration.image == "docker.io/library/postgres:16")
        #expect(postgres.configuration.environment == ["POSTGRES_USER=u", "POSTGRES_PASSWORD=p", "POSTGRES_DB=d"])
        #expect(postgres.configuration.user == nil && postgres.files.isEmpty)
        #expect(postgres.waitStrategy.description.contains("2 log lines"))
        let redis = try await RedisFixture(image: .reference("docker.io/library/redis:7")).fixture(in: runtime)
        #expect(redis.configuration.image == "docker.io/library/redis:7" && redis.configuration.command?.first == "redis-server")
        let nginx = try await NginxFixture(image: .reference("docker.io/library/nginx:1.27")).fixture(in: runtime)
        #expect(nginx.files.isEmpty, "the official image keeps its own nginx.conf")
    }
}

/// The XCTest side: busybox httpd, Redis and PostgreSQL in one test, each with its client.
final class ModuleXCTests: XCTestCase {
    private let network = "modules-\(getpid())"

    override func setUp() async throws {
        _ = try await TestRuntime.shared().networks.create(network)
    }

    func testHTTPRedisAndPostgresAnswerTheirClients() async throws {
        let runtime = try await TestRuntime.shared()
        let web = try await startFixture(Fixture(
            image: "busybox", command: ["httpd", "-f", "-p", "8080", "-h", "/tmp"], files: [.text("hello\n", at: "/tmp/index.html")],
            ports: [8080], network: .bridge([network]), waitingFor: .http("/index.html", port: 8080)), in: runtime)
        let redis = RedisFixture(network: .bridge([network]))
        let cache = try await startFixture(redis, in: runtime)
        let postgres = PostgresFixture(network: .bridge([network]))
        let db = try await startFixture(postgres, in: runtime)

        let response = try await HTTPClient.shared.get(url: "http://\(web.host):\(try web.mappedPort(8080))/index.html").get()
        XCTAssertEqual(response.status.code, 200)
        XCTAssertEqual(try redisCLI(try redis.connectionURL(of: cache), ["PING"]), "PONG")
        XCTAssertEqual(try psql(try postgres.connectionURL(of: db), "select 40 + 2"), "42")
    }

    /// Runs after the tear-down blocks that removed the fixtures.
    override func tearDown() async throws {
        try await TestRuntime.shared().networks.remove(network)
    }
}
