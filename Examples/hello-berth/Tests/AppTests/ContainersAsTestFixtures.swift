// The code of ContainerTesting's articles (Sources/ContainerTesting/ContainerTesting.docc),
// block by block in each article's order, so that `make check-consumer` compiles it as a
// dependent's test code; scripts/check-doc-code checks that every block is here verbatim.
// Compiled, not run (`swift build --build-tests`).
import Containers
import ContainerTesting
import Testing
import XCTest

// ContainerTesting.md
func landingPage() async throws {
    let web = Fixture(
        image: "busybox", command: ["httpd", "-f", "-p", "8080", "-h", "/www"],
        files: [.text("hello\n", at: "/www/index.html")],
        ports: [8080],
        waitingFor: .http("/index.html", port: 8080))

    try await withFixture(web) { web in
        let url = "http://\(web.host):\(try web.mappedPort(8080))/index.html"
        print("GET", url)                               // a real client talks to it here
    }
}

// ContainersAsTestFixtures.md
func getAnImage() async throws {
    let runtime = try ContainerRuntime.shared()
    try await runtime.images.makeBusyboxImage()         // busybox:latest, offline
}

let web = Fixture(
    image: "busybox", command: ["httpd", "-f", "-p", "8080", "-h", "/www"],
    files: [.text("hello\n", at: "/www/index.html")],
    ports: [8080],
    waitingFor: .http("/index.html", port: 8080),
    startupTimeout: .seconds(30))

func runATest() async throws {
    try await withFixture(web) { web in
        let url = "http://\(web.host):\(try web.mappedPort(8080))/index.html"
        print("GET", url)                               // your HTTP client here
    }

    let database = Fixture(
        image: "busybox", command: ["/bin/sh", "-c", "sleep 1; echo ready; exec nc -l -p 5432"],
        waitingFor: .allOf([.logLine(matching: "^ready$"), .listeningPort(5432).timeout(.seconds(10))]))
    _ = database
}

func useAModule() async throws {
    let postgres = PostgresFixture(user: "app", password: "secret", database: "orders")
    try await withFixture(postgres) { db in
        let url = try postgres.connectionURL(of: db)    // postgres://app:secret@127.0.0.1:41623/orders
        print("psql", url)                              // psql, PostgresNIO, … here
    }

    let redis = RedisFixture(password: "secret")
    try await withFixture(redis) { cache in
        print("redis-cli -u", try redis.connectionURL(of: cache))
    }
}

func officialImages() {
    let official = PostgresFixture(image: .reference("docker.io/library/postgres:16"), password: "secret")
    let cache = RedisFixture(image: .reference("docker.io/library/redis:7"))
    let web = NginxFixture(image: .reference("docker.io/library/nginx:1.27"))
    _ = (official, cache, web)
}

@Suite(.fixture("web", web))
struct WebTests {
    @Test func servesTheIndex() async throws {
        let web = try RunningFixture.scoped("web")
        let url = "http://\(web.host):\(try web.mappedPort(8080))/index.html"
        print("GET", url)                           // your HTTP client here
    }
}

final class WebXCTests: XCTestCase {
    func testServesTheIndex() async throws {
        let server = try await startFixture(web)
        let url = "http://\(server.host):\(try server.mappedPort(8080))/index.html"
        print("GET", url)                           // your HTTP client here
    }
}

func resetBetweenTests(database: Fixture) async throws {
    try await withFixture(database) { database in
        let empty = try await database.snapshot()
        // … the test writes to the database …
        try await database.restore(empty)                // as it was at the snapshot
    }
}

let cache = Fixture(
    image: "busybox", command: ["httpd", "-f", "-p", "8080"],
    ports: [8080], waitingFor: .listeningPort(8080)).reused(for: .seconds(600))
