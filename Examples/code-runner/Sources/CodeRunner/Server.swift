import Containers
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// The code-runner service: the HTTP API over a ``Runner``, as one `ServiceGroup` that drains
/// and cleans up on SIGTERM.
///
/// ```swift
/// let server = try CodeRunnerServer(configuration: configuration, runtime: try ContainerRuntime())
/// try await server.run()
/// ```
public struct CodeRunnerServer: Sendable {
    /// The configuration.
    public let configuration: ServerConfiguration
    /// The runner that makes the containers.
    public let runner: Runner
    private let apiKeys: Set<String>
    private let logger: Logger

    /// A server on `runtime` (whose image store holds the images runs may name).
    ///
    /// - Throws: `ConfigurationError` for a configuration ``ServerConfiguration/validate()`` refuses
    ///   or an API keys file that cannot be read.
    public init(configuration: ServerConfiguration, runtime: ContainerRuntime, logger: Logger = Logger(label: "code-runner")) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        apiKeys = try configuration.allAPIKeys()
        runner = Runner(runtime: runtime, configuration: configuration, metrics: RunnerMetrics(), logger: logger)
        if apiKeys.isEmpty { logger.warning("no API keys are configured: anyone who reaches the port may run code") }
    }

    /// Serves until SIGTERM or SIGINT (or `gracefulShutdownSignals`): then stops accepting
    /// connections, lets the runs in flight finish, and removes every container it made.
    ///
    /// - Parameters:
    ///   - gracefulShutdownSignals: The signals that start the shutdown.
    ///   - onServerRunning: Called with the port once the server listens (port 0 picks one).
    public func run(gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint],
                    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await serviceGroup(gracefulShutdownSignals: gracefulShutdownSignals, onServerRunning: onServerRunning).run()
    }

    /// The service group ``run(gracefulShutdownSignals:onServerRunning:)`` runs: the runner
    /// first, so that it is shut down last, after the HTTP server has drained.
    public func serviceGroup(gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint],
                             onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> ServiceGroup {
        let application = Application(
            router: router(),
            configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "code-runner"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
        return ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: runner), .init(service: application)],
            gracefulShutdownSignals: gracefulShutdownSignals, logger: logger))
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestLogging())
        router.get("healthz") { _, _ in try json(["status": "ok"]) }
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: runner.metrics.text())))
        }
        let api = router.group("v1").add(middleware: BearerAuthentication(keys: apiKeys))
        api.get("images") { _, _ in try listImages() }
        api.post("images/pull") { request, context in try await pull(request, context) }
        api.post("runs") { request, context in try await run(request, context) }
        api.post("runs/stream") { request, context in try await stream(request, context) }
        return router
    }

    // MARK: Handlers

    private func listImages() throws -> Response {
        struct Listed: Encodable { var name: String?; var id: String; var size: Int64 }
        let images: [Image]
        do {
            images = try runner.runtime.images.images()
        } catch {
            throw APIError(.internalServerError, "images_failed", "cannot list the images: \(error)")
        }
        return try json(["images": images.map { Listed(name: $0.reference?.description, id: $0.id.description, size: $0.size) }])
    }

    private func pull(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        struct Pull: Decodable { var image: String }
        let pull: Pull = try await decode(request)
        guard let registry = configuration.registry else {
            throw APIError(.badRequest, "no_registry", "this server has no registry configured to pull from")
        }
        let remote: ImageReference
        let local: ImageReference
        do {
            remote = try ImageReference(parsing: registry + "/" + pull.image)
            local = try ImageReference(parsing: pull.image)
        } catch {
            throw APIError(.badRequest, "invalid_request", "image \"\(pull.image)\" is not a valid reference: \(error)")
        }
        do {
            let image = try await runner.runtime.images.pull(remote)
            try runner.runtime.images.tag(remote.description, as: local)
            context.logger.info("pulled", metadata: ["image": "\(remote)"])
            return try json(["name": local.description, "id": image.id.description])
        } catch {
            throw APIError(.badGateway, "pull_failed", "cannot pull \(remote) from \(registry): \(error)")
        }
    }

    /// Parses and checks a run request: the body, the limits, the image.
    private func runRequest(_ request: Request) async throws -> (RunRequest, RunLimits) {
        let run: RunRequest = try await decode(request)
        do {
            try run.validate()
            let limits = try run.limits(configuration)
            guard (try? runner.runtime.images.image(run.image)) != nil else {
                throw APIError(.badRequest, "unknown_image",
                               "image \"\(run.image)\" is not on this server (GET /v1/images lists them, POST /v1/images/pull fetches one)")
            }
            return (run, limits)
        } catch {
            runner.metrics.failed("bad_request")
            throw error
        }
    }

    private func run(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (run, limits) = try await runRequest(request)
        try await acquireSlot()
        do {
            let result = try await runner.execute(run, limits: limits, logger: context.logger)
            await runner.queue.release()
            return try json(result)
        } catch {
            await runner.queue.release()
            throw error
        }
    }

    /// The run as server-sent events: `stdout` and `stderr` events with `{"data": text}` as the
    /// program writes, then one `exit` event with the ``RunResult``.
    private func stream(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (run, limits) = try await runRequest(request)
        try await acquireSlot()
        let runner = runner
        let logger = context.logger
        let (events, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let producer = Task {
            do throws(APIError) {
                let result = try await runner.execute(run, limits: limits, logger: logger) { chunk in
                    continuation.yield(serverSentEvent("\(chunk.stream)", ["data": String(decoding: chunk.bytes, as: UTF8.self)]))
                }
                continuation.yield(serverSentEvent("exit", result))
            } catch {
                continuation.yield(serverSentEvent("error", APIError.Body(error: .init(code: error.code, message: error.message))))
            }
            continuation.finish()
            await runner.queue.release()
        }
        // A client that goes away ends the stream early: cancelling the run kills and removes
        // its container.
        continuation.onTermination = { reason in
            if case .cancelled = reason { producer.cancel() }
        }
        let body = ResponseBody(asyncSequence: events)
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    /// Takes a run slot, or refuses with 429 when the queue is full.
    private func acquireSlot() async throws {
        guard await runner.queue.acquire() else {
            runner.metrics.failed("rejected")
            throw APIError(.tooManyRequests, "busy",
                           "\(configuration.maxConcurrentRuns) runs are running and \(configuration.maxQueuedRuns) waiting: retry later",
                           headers: [.retryAfter: "1"])
        }
    }

    /// The body as JSON of type `T`, at most ``ServerConfiguration/maxRequestBytes`` long.
    private func decode<T: Decodable>(_ request: Request) async throws -> T {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > configuration.maxRequestBytes {
            throw tooLarge()
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: configuration.maxRequestBytes)
        } catch is NIOTooManyBytesError {
            throw tooLarge()
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: buffer))
        } catch {
            throw APIError.malformedJSON(error)
        }
    }

    private func tooLarge() -> APIError {
        APIError(.contentTooLarge, "request_too_large", "the request body is larger than \(configuration.maxRequestBytes) bytes")
    }
}

/// `value` as a JSON response.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return Response(status: status, headers: [.contentType: "application/json"],
                     body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}

/// One server-sent event: `event: name`, `data:` the JSON of `value` (on one line).
func serverSentEvent(_ name: String, _ value: some Encodable) -> ByteBuffer {
    let data = (try? JSONEncoder().encode(value)) ?? Data("{}".utf8)
    return ByteBuffer(string: "event: \(name)\ndata: \(String(decoding: data, as: UTF8.self))\n\n")
}

/// Lets in requests that carry one of the keys as `Authorization: Bearer KEY`; with no keys,
/// every request.
struct BearerAuthentication: RouterMiddleware {
    let keys: Set<String>

    func handle(_ request: Request, context: BasicRequestContext,
                next: (Request, BasicRequestContext) async throws -> Response) async throws -> Response {
        guard !keys.isEmpty else { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw APIError(.unauthorized, "unauthorized", "this API needs an Authorization: Bearer <key> header",
                           headers: [.wwwAuthenticate: "Bearer"])
        }
        let presented = Array(header.dropFirst("Bearer ".count).utf8)
        // Compared in time that does not depend on where the bytes differ.
        let known = keys.contains { key in
            let key = Array(key.utf8)
            return key.count == presented.count && zip(key, presented).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
        }
        guard known else {
            throw APIError(.unauthorized, "unauthorized", "the API key is not valid", headers: [.wwwAuthenticate: "Bearer"])
        }
        return try await next(request, context)
    }
}

/// Logs each request with its outcome, puts the request id in `X-Request-Id`, and answers every
/// error as JSON (``APIError``'s form), including the router's own 404.
struct RequestLogging: RouterMiddleware {

    func handle(_ request: Request, context: BasicRequestContext,
                next: (Request, BasicRequestContext) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = try error.response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            response = try APIError(error.status, "http_\(error.status.code)", error.status.reasonPhrase).response(from: request, context: context)
        }
        response.headers[.init("X-Request-Id")!] = context.id
        context.logger.info("\(request.method) \(request.uri.path) \(response.status.code)")
        return response
    }
}
