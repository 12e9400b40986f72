import Foundation
import Hummingbird

/// The body of `POST /v1/runs`: what to run, and in what.
public struct RunRequest: Sendable, Codable {
    /// The image, by a name the server's store holds (`GET /v1/images`).
    public var image: String
    /// The program and its arguments (`["sh", "-c", "echo hi"]`).
    public var command: [String]
    /// Bytes written to the program's stdin, then end-of-file; `nil` gives it none.
    public var stdin: String?
    /// Environment variables, over the image's.
    public var env: [String: String]?
    /// Files by path relative to `/work`, the working directory, mounted read-only.
    public var files: [String: String]?
    /// Limits; a missing one is the server's default.
    public var limits: RequestedLimits?

    /// A request.
    public init(image: String, command: [String], stdin: String? = nil, env: [String: String]? = nil,
                files: [String: String]? = nil, limits: RequestedLimits? = nil) {
        self.image = image
        self.command = command
        self.stdin = stdin
        self.env = env
        self.files = files
        self.limits = limits
    }
}

/// The limits a request asks for; each is optional.
public struct RequestedLimits: Sendable, Codable {
    /// See ``RunLimits/wallTimeMs``.
    public var wallTimeMs: Int?
    /// See ``RunLimits/memoryBytes``.
    public var memoryBytes: Int64?
    /// See ``RunLimits/cpus``.
    public var cpus: Double?
    /// See ``RunLimits/pids``.
    public var pids: Int64?
    /// See ``RunLimits/outputBytes``.
    public var outputBytes: Int?

    /// Limits to ask for.
    public init(wallTimeMs: Int? = nil, memoryBytes: Int64? = nil, cpus: Double? = nil, pids: Int64? = nil, outputBytes: Int? = nil) {
        self.wallTimeMs = wallTimeMs
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.pids = pids
        self.outputBytes = outputBytes
    }

    /// These limits over `defaults`.
    func applied(to defaults: RunLimits) -> RunLimits {
        RunLimits(wallTimeMs: wallTimeMs ?? defaults.wallTimeMs, memoryBytes: memoryBytes ?? defaults.memoryBytes,
                  cpus: cpus ?? defaults.cpus, pids: pids ?? defaults.pids, outputBytes: outputBytes ?? defaults.outputBytes)
    }
}

/// The answer to `POST /v1/runs`, and the last event of its stream.
public struct RunResult: Sendable, Codable, Equatable {
    /// The run's id (its container's name).
    public var id: String
    /// The exit code as a shell reports it: 128 + the signal for a killed program, 137 for an
    /// OOM kill, 124 for the deadline.
    public var exitCode: Int32
    /// The signal that ended the program, if one did (`SIGKILL`).
    public var signal: String?
    /// What the program wrote to stdout, up to the output limit (invalid UTF-8 replaced).
    public var stdout: String
    /// What it wrote to stderr, up to the output limit.
    public var stderr: String
    /// Whether stdout was longer than the limit.
    public var stdoutTruncated: Bool
    /// Whether stderr was longer than the limit.
    public var stderrTruncated: Bool
    /// From the request's start of the container to the end of its run, in milliseconds.
    public var durationMs: Double
    /// Whether the kernel's OOM killer ended it (the memory limit).
    public var oomKilled: Bool
    /// Whether the wall-time limit ended it.
    public var timedOut: Bool
}

/// An error the API answers with: an HTTP status and `{"error": {"code": …, "message": …}}`.
public struct APIError: Error, HTTPResponseError, Sendable {
    /// The HTTP status.
    public var status: HTTPResponse.Status
    /// A stable, machine-readable code (`unknown_image`, `bad_limits`, `malformed_json`…).
    public var code: String
    /// What was wrong, for a person.
    public var message: String
    /// Extra headers (`Retry-After`, `WWW-Authenticate`).
    public var headers: HTTPFields = [:]

    /// An error.
    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    /// The JSON body.
    public struct Body: Codable, Sendable {
        /// The error.
        public var error: Detail
        /// The error's fields.
        public struct Detail: Codable, Sendable {
            /// ``APIError/code``.
            public var code: String
            /// ``APIError/message``.
            public var message: String
        }
    }

    /// The response: the status, the headers and the JSON body.
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json"
        let body = (try? JSONEncoder().encode(Body(error: .init(code: code, message: message)))) ?? Data()
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func malformedJSON(_ error: any Error) -> APIError {
        let detail: String
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?:
            detail = "the field \(path(context.codingPath + [key])) is missing"
        case .typeMismatch(let type, let context)?, .valueNotFound(let type, let context)?:
            detail = "the field \(path(context.codingPath)) must be \(describe(type))"
        case .dataCorrupted(let context)?:
            detail = context.codingPath.isEmpty ? "the body is not valid JSON" : "the field \(path(context.codingPath)) is invalid"
        default:
            detail = "the body is not valid JSON"
        }
        return APIError(.badRequest, "malformed_json", detail)
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
    }

    private static func describe(_ type: Any.Type) -> String {
        let name = "\(type)"
        if name.hasPrefix("Array") { return "an array" }
        if name.hasPrefix("Dictionary") { return "an object" }
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default: return name
        }
    }
}

extension RunRequest {
    /// The limits of this request, or the error that names the first bad one.
    func limits(_ configuration: ServerConfiguration) throws(APIError) -> RunLimits {
        let limits = (self.limits ?? RequestedLimits()).applied(to: configuration.defaultLimits)
        if let problem = limits.problem(within: configuration.maximumLimits, what: "limits") {
            throw APIError(.badRequest, "bad_limits", problem)
        }
        return limits
    }

    /// Checks what can be checked without the image: the command, the environment, the files.
    func validate() throws(APIError) {
        guard !image.isEmpty else { throw APIError(.badRequest, "invalid_request", "image must not be empty") }
        guard let program = command.first, !program.isEmpty else {
            throw APIError(.badRequest, "invalid_request", "command must name a program")
        }
        for key in (env ?? [:]).keys where key.isEmpty || key.contains("=") || key.contains("\0") {
            throw APIError(.badRequest, "invalid_request", "env name \"\(key)\" must be non-empty and contain no = or NUL")
        }
        for path in (files ?? [:]).keys {
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            guard !path.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }), !path.contains("\0") else {
                throw APIError(.badRequest, "invalid_request", "file path \"\(path)\" must be relative, without empty, . or .. components")
            }
        }
    }
}
