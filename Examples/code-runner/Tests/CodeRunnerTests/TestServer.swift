import AsyncHTTPClient
import CodeRunner
import Containers
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Testing

/// The Berth runtime every test server shares: one root for the test process, with the busybox
/// image made offline the first time.
enum TestRuntime {
    static let root = "/var/tmp/code-runner-tests"
    private static let shared: ContainerRuntime = {
        do {
            return try ContainerRuntime(root: root)
        } catch {
            fatalError("cannot open the Berth root \(root): \(error)")
        }
    }()

    static func runtime() async throws -> ContainerRuntime {
        if (try? shared.images.image("busybox")) == nil {
            try await shared.images.makeBusyboxImage()
        }
        return shared
    }

    /// The containers a runner made that still exist.
    static func leftovers() async throws -> [String] {
        try await runtime().list(all: true, labels: [Runner.label: nil]).map(\.name)
    }
}

/// A client of a test server on 127.0.0.1.
struct TestClient: Sendable {
    static let key = "test-key-0123456789"

    struct Reply: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }

        func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
            try JSONDecoder().decode(T.self, from: Data(body))
        }

        /// The `error.code` of a JSON error body.
        var errorCode: String? { try? decode(APIError.Body.self).error.code }
    }

    let port: Int
    var key: String? = TestClient.key

    func request(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, timeout: TimeAmount = .seconds(120)) async throws -> Reply {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: Array(buffer: bytes))
    }

    func get(_ path: String) async throws -> Reply { try await request(.GET, path) }

    func post(_ path: String, json: String) async throws -> Reply { try await request(.POST, path, body: Array(json.utf8)) }

    func run(_ run: RunRequest, path: String = "/v1/runs") async throws -> Reply {
        try await request(.POST, path, body: Array(try JSONEncoder().encode(run)))
    }

    /// Runs and expects 200: the result.
    func result(_ run: RunRequest) async throws -> RunResult {
        let reply = try await self.run(run)
        try #require(reply.status == 200, "\(reply.status): \(reply.text)")
        return try reply.decode()
    }
}

/// Starts a real server on 127.0.0.1 (an ephemeral port), runs `body` with a client of it and a
/// function that shuts it down as SIGTERM does, then shuts it down and checks that no container
/// of it is left.
func withServer(_ configure: (inout ServerConfiguration) -> Void = { _ in },
                _ body: (TestClient, @escaping @Sendable () async -> Void) async throws -> Void) async throws {
    var configuration = ServerConfiguration()
    configuration.port = 0
    configuration.apiKeys = [TestClient.key]
    configuration.scratchDirectory = "/tmp/code-runner-tests-\(getpid())"
    configure(&configuration)
    var logger = Logger(label: "code-runner-tests")
    logger.logLevel = .warning
    let server = try CodeRunnerServer(configuration: configuration, runtime: try await TestRuntime.runtime(), logger: logger)
    let (ports, announce) = AsyncStream<Int>.makeStream()
    let group = server.serviceGroup(gracefulShutdownSignals: []) { port in announce.yield(port) }
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())
        do {
            try await body(TestClient(port: port), { await group.triggerGracefulShutdown() })
        } catch {
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
    #expect(try await TestRuntime.leftovers().isEmpty)
}
