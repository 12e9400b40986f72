import Containers
import ContainerTesting
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import XCTest

/// The runtime (`/var/lib/berth`, or `BERTH_ROOT`), with the busybox image built from the
/// host's busybox-static and a bridge network of the example's own, made on first use.
enum Runtime {
    static let network = "fixtures-example"

    static let shared: Task<ContainerRuntime, any Error> = Task {
        let runtime = try ContainerRuntime.shared()
        if (try? runtime.images.image("busybox")) == nil { try await runtime.images.makeBusyboxImage() }
        if (try? runtime.networks.inspect(network)) == nil { _ = try runtime.networks.create(network) }
        return runtime
    }
}

/// A web server: busybox httpd serving one page.
let web = Fixture(
    image: "busybox", command: ["httpd", "-f", "-p", "8080", "-h", "/www"],
    files: [.text("hello from busybox\n", at: "/www/index.html")],
    ports: [8080], network: .bridge([Runtime.network]),
    waitingFor: .http("/index.html", port: 8080))

/// A database: PostgreSQL from the host's package, with a user and a database of its own.
let database = PostgresFixture(user: "shop", password: "secret", database: "orders", network: .bridge([Runtime.network]))

/// Runs `psql` on `url` with one command: its trimmed output.
func psql(_ url: String, _ command: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
    process.arguments = [url, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", command]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard process.terminationStatus == 0 else { throw PsqlFailed(command: command, status: process.terminationStatus) }
    return text
}

struct PsqlFailed: Error {
    var command: String
    var status: Int32
}

@Suite(.serialized)
struct ShopTests {
    @Test func theDatabaseKeepsOrders() async throws {
        try await withFixture(database, in: try await Runtime.shared.value) { db in
            let url = try database.connectionURL(of: db)
            _ = try psql(url, "create table orders (id serial primary key, item text not null)")
            _ = try psql(url, "insert into orders (item) values ('apple'), ('pear')")
            #expect(try psql(url, "select string_agg(item, ',' order by id) from orders") == "apple,pear")
        }
    }

    @Test func theWebServerAndTheDatabaseStartTogether() async throws {
        let runtime = try await Runtime.shared.value
        try await withFixtures([web, try await database.fixture(in: runtime)], in: runtime) { fixtures in
            let (server, db) = (fixtures[0], fixtures[1])
            let url = URL(string: "http://\(server.host):\(try server.mappedPort(8080))/index.html")!
            let (body, response) = try await URLSession.shared.data(from: url)
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
            #expect(String(decoding: body, as: UTF8.self) == "hello from busybox\n")
            #expect(try psql(try database.connectionURL(of: db), "select 1 + 1") == "2")
        }
    }
}

final class ShopXCTests: XCTestCase {
    func testTheWebServerServesItsPage() async throws {
        let server = try await startFixture(web, in: try await Runtime.shared.value)
        let url = URL(string: "http://\(server.host):\(try server.mappedPort(8080))/index.html")!
        let (body, _) = try await URLSession.shared.data(from: url)
        XCTAssertEqual(String(decoding: body, as: UTF8.self), "hello from busybox\n")
    }
}
