import AsyncHTTPClient
import FoundationEssentials
import Logging
import NIOCore
import NIOHTTP1

/// One operation's connection pool plus the request logic: authorization challenges, retries,
/// ranged blob downloads and uploads.
struct RegistrySession: Sendable {
    let client: HTTPClient
    let registryClient: RegistryClient

    var configuration: RegistryClient.Configuration { registryClient.configuration }
    var logger: Logger { registryClient.logger }

    /// How to make a request body again for a retry.
    typealias BodyFactory = @Sendable () -> HTTPClientRequest.Body

    // MARK: Requests

    /// Sends a request, answering authorization challenges and retrying connection errors,
    /// 5xx and 429 with backoff.
    ///
    /// - Parameters:
    ///   - scopes: Token scopes the request needs (`repository:a/b:pull`).
    ///   - url: An absolute URL (an upload location) instead of `path`.
    func send(
        _ method: HTTPMethod, registry: String, path: String = "", url: String? = nil, scopes: [String],
        headers: [(String, String)] = [], body: BodyFactory? = nil
    ) async throws(ImageError) -> HTTPClientResponse {
        var target = url ?? registryClient.baseURL(registry) + path
        var attempt = 0
        var challenged = false
        var withheldFrom: String?
        while true {
            attempt += 1
            var request = HTTPClientRequest(url: target)
            request.method = method
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            if let authorization = registryClient.cachedAuthorization(registry: registry, scopes: scopes) {
                request.headers.replaceOrAdd(name: "Authorization", value: authorization)
            }
            if let body { request.body = body() }
            let response: HTTPClientResponse
            do {
                response = try await client.execute(request, timeout: .seconds(3600), logger: logger)
            } catch {
                if url == nil, target.hasPrefix("https://"), registryClient.fallBackToPlainHTTP(registry) {
                    target = registryClient.baseURL(registry) + path
                    attempt -= 1
                    continue
                }
                guard attempt < configuration.retry.maxAttempts, !Task.isCancelled else {
                    throw ImageError(code: .network, registry: registry, detail: "\(method) \(target): \(error)")
                }
                try await backoff(attempt, registry: registry, why: "\(error)")
                continue
            }
            if response.status == .unauthorized && !challenged {
                challenged = true
                let challenge = response.headers.first(name: "WWW-Authenticate") ?? ""
                try? await drain(response)
                withheldFrom = try await authorize(registry: registry, challenge: challenge, scopes: scopes)
                attempt -= 1
                continue
            }
            if response.status == .unauthorized, let realm = withheldFrom {
                try? await drain(response)
                throw ImageError(
                    code: .unauthorized, registry: registry,
                    detail: "\(method) \(target): the anonymous token from \(realm) is not enough, and the credentials "
                        + "were withheld from it: \(Self.withheldReason)")
            }
            if (response.status.code >= 500 || response.status == .tooManyRequests) && attempt < configuration.retry.maxAttempts {
                let retryAfter = response.headers.first(name: "Retry-After").flatMap(Int.init)
                try? await drain(response)
                try await backoff(attempt, registry: registry, why: "\(response.status.code)", at: retryAfter.map { .seconds(min($0, 30)) })
                continue
            }
            return response
        }
    }

    private func backoff(_ attempt: Int, registry: String, why: String, at delay: Duration? = nil) async throws(ImageError) {
        let wait = delay ?? configuration.retry.delay(forRetry: attempt - 1)
        logger.debug("retrying request", metadata: ["registry": "\(registry)", "reason": "\(why)", "wait": "\(wait)"])
        do {
            try await Task.sleep(for: wait)
        } catch {
            throw ImageError(code: .network, registry: registry, detail: "cancelled while waiting to retry")
        }
    }

    private func drain(_ response: HTTPClientResponse) async throws {
        for try await _ in response.body {}
    }

    /// Fails with a typed error unless the response has one of the expected statuses.
    func expect(
        _ response: HTTPClientResponse, _ statuses: [HTTPResponseStatus], registry: String, what: String,
        reference: String? = nil, digest: String? = nil
    ) async throws(ImageError) {
        guard !statuses.contains(response.status) else { return }
        let body = (try? await response.body.collect(upTo: 64 * 1024)).map { String(buffer: $0) } ?? ""
        let message = Self.registryMessage(body) ?? "HTTP \(response.status.code)"
        let code: ImageError.Code =
            switch response.status {
            case .unauthorized: .unauthorized
            case .forbidden: .denied
            case .notFound: .notFound
            default: .registry
            }
        throw ImageError(code: code, reference: reference, registry: registry, digest: digest, detail: "\(what): \(message)")
    }

    /// The first message of a distribution-spec error body `{"errors":[{"code":…,"message":…}]}`.
    private static func registryMessage(_ body: String) -> String? {
        struct Errors: Decodable {
            struct Entry: Decodable {
                var code: String?
                var message: String?
            }
            var errors: [Entry]
        }
        guard let first = try? JSONDecoder().decode(Errors.self, from: Data(body.utf8)).errors.first else { return nil }
        return [first.code?.lowercased(), first.message].compactMap { $0 }.joined(separator: ": ")
    }

    // MARK: Authorization

    /// Why credentials were not sent to a token realm, for messages.
    static let withheldReason = "the realm is plain http, and not on the host of a registry reached over plain http"

    /// Answers a `WWW-Authenticate` challenge: Basic with the stored credentials, or a bearer
    /// token from the realm for the scopes.
    ///
    /// - Returns: The realm, when credentials exist but were withheld from it
    ///   (``mayReceiveCredentials(_:registry:)``) and the token was requested anonymously.
    private func authorize(registry: String, challenge: String, scopes: [String]) async throws(ImageError) -> String? {
        let (scheme, parameters) = Self.parseChallenge(challenge)
        let credentials = try registryClient.credentials(for: registry)
        let basic = credentials.map { "Basic " + Data("\($0.username):\($0.password)".utf8).base64EncodedString() }
        switch scheme {
        case "basic":
            guard let basic else {
                throw ImageError(code: .unauthorized, registry: registry, detail: "registry requires credentials and none are configured")
            }
            registryClient.cacheAuthorization(basic, registry: registry, scopes: nil, lifetime: .seconds(3600))
            return nil
        case "bearer":
            guard let realm = parameters["realm"], var components = URLComponents(string: realm) else {
                throw ImageError(code: .unauthorized, registry: registry, detail: "bearer challenge has no realm")
            }
            var wanted = scopes
            if let offered = parameters["scope"], !wanted.contains(offered) { wanted.append(offered) }
            components.queryItems =
                (components.queryItems ?? []) + [URLQueryItem(name: "service", value: parameters["service"])]
                + wanted.map { URLQueryItem(name: "scope", value: $0) }
            var request = HTTPClientRequest(url: components.string ?? realm)
            let withheld = basic != nil && !mayReceiveCredentials(components, registry: registry)
            if let basic, !withheld {
                request.headers.add(name: "Authorization", value: basic)
            } else if withheld {
                logger.warning(
                    "credentials withheld from the token realm; requesting an anonymous token",
                    metadata: ["registry": "\(registry)", "realm": "\(realm)", "reason": "\(Self.withheldReason)"])
            }
            let response: HTTPClientResponse
            do {
                response = try await client.execute(request, timeout: .seconds(60), logger: logger)
            } catch {
                throw ImageError(code: .network, registry: registry, detail: "fetch token from \(realm): \(error)")
            }
            try await expect(
                response, [.ok], registry: registry,
                what: "fetch token from \(realm)" + (withheld ? " (credentials withheld: \(Self.withheldReason))" : ""))
            struct Token: Decodable {
                var token: String?
                var access_token: String?
                var expires_in: Int?
            }
            let body: ByteBuffer
            do { body = try await response.body.collect(upTo: 1 << 20) } catch {
                throw ImageError(code: .network, registry: registry, detail: "read token from \(realm): \(error)")
            }
            let answer = try ContentStore.decode(Token.self, from: Array(buffer: body), what: "token response from \(realm)")
            guard let token = answer.token ?? answer.access_token else {
                throw ImageError(code: .unauthorized, registry: registry, detail: "token response from \(realm) has no token")
            }
            // Refresh a little early so a token never expires between the check and the request.
            let lifetime = max((answer.expires_in ?? 60) - 5, 1)
            registryClient.cacheAuthorization("Bearer " + token, registry: registry, scopes: scopes, lifetime: .seconds(lifetime))
            return withheld ? realm : nil
        default:
            throw ImageError(code: .unauthorized, registry: registry, detail: "unsupported authentication challenge \"\(challenge)\"")
        }
    }

    /// Whether the Basic credentials for `registry` may go to the token realm `realm`.
    ///
    /// Over HTTPS always (Docker sends them to any realm). Over plain HTTP only to the
    /// registry's own host, and only where the client already talks plain HTTP to that registry
    /// itself (a loopback registry, or one in ``RegistryClient/Configuration/insecureRegistries``,
    /// that answered plain HTTP): a realm elsewhere over plain HTTP would carry the password in
    /// clear text to a host the user never chose, and one on the host of a registry reached over
    /// HTTPS would downgrade it. Hosts compare as written, so `127.0.0.2` or `localhost` is
    /// another host than `127.0.0.1`. The token is then requested without credentials.
    func mayReceiveCredentials(_ realm: URLComponents, registry: String) -> Bool {
        switch realm.scheme?.lowercased() {
        case "https":
            return true
        case "http":
            let unbracketed = { (host: String) in trimming(host) { $0 == "[" || $0 == "]" }.lowercased() }
            let registryHost =
                registry.hasPrefix("[")
                ? String(registry.prefix { $0 != "]" }) : String(registry.split(separator: ":").first ?? "")
            guard let realmHost = realm.host, !realmHost.isEmpty else { return false }
            return unbracketed(realmHost) == unbracketed(registryHost)
                && registryClient.baseURL(registry).hasPrefix("http://")
        default:
            return false
        }
    }

    /// Splits `Bearer realm="…",service="…",scope="…"` into the lower-cased scheme and its parameters.
    static func parseChallenge(_ header: String) -> (scheme: String, parameters: [String: String]) {
        let trimmed = trimming(header) { $0 == " " || $0 == "\t" }
        guard let space = trimmed.firstIndex(of: " ") else { return (trimmed.lowercased(), [:]) }
        var parameters: [String: String] = [:]
        var rest = trimmed[trimmed.index(after: space)...]
        while let equals = rest.firstIndex(of: "=") {
            let key = trimming(rest[..<equals]) { $0 == " " || $0 == "," }.lowercased()
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                let end = rest.firstIndex(of: "\"") ?? rest.endIndex
                value = String(rest[..<end])
                rest = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[end...]
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = String(rest[..<end])
                rest = rest[end...]
            }
            parameters[key] = value
        }
        return (trimmed[..<space].lowercased(), parameters)
    }

    // MARK: Manifests

    static func pullScope(_ reference: ImageReference) -> [String] { ["repository:\(reference.repository):pull"] }

    func resolve(_ reference: ImageReference) async throws(ImageError) -> Descriptor {
        let response = try await send(
            .HEAD, registry: reference.registry, path: "/v2/\(reference.repository)/manifests/\(reference.manifestReference)",
            scopes: Self.pullScope(reference), headers: [("Accept", MediaType.manifestAccept)])
        try await expect(response, [.ok], registry: reference.registry, what: "resolve", reference: reference.description)
        guard let digestText = response.headers.first(name: "Docker-Content-Digest") ?? reference.digest?.description,
            let length = response.headers.first(name: "Content-Length").flatMap(Int64.init),
            let type = response.headers.first(name: "Content-Type")
        else {
            // Some registries answer HEAD without the headers; the full GET always works.
            return try await manifest(reference).descriptor
        }
        return Descriptor(mediaType: MediaType(rawValue: type), digest: try Digest(parsing: digestText), size: length)
    }

    func manifest(_ reference: ImageReference) async throws(ImageError) -> (descriptor: Descriptor, bytes: [UInt8]) {
        let response = try await send(
            .GET, registry: reference.registry, path: "/v2/\(reference.repository)/manifests/\(reference.manifestReference)",
            scopes: Self.pullScope(reference), headers: [("Accept", MediaType.manifestAccept)])
        try await expect(response, [.ok], registry: reference.registry, what: "get manifest", reference: reference.description)
        let body: ByteBuffer
        do { body = try await response.body.collect(upTo: 4 << 20) } catch {
            throw ImageError(code: .network, reference: reference.description, registry: reference.registry, detail: "read manifest: \(error)")
        }
        let bytes = Array(buffer: body)
        let expected = reference.digest ?? response.headers.first(name: "Docker-Content-Digest").flatMap { try? Digest(parsing: $0) }
        let algorithm = expected?.algorithm ?? "sha256"
        guard var hasher = DigestHasher(algorithm: algorithm) else {
            throw ImageError(code: .unsupported, reference: reference.description, detail: "digest algorithm \(algorithm)")
        }
        bytes.withUnsafeBytes { hasher.update($0) }
        let actual = hasher.finalize()
        if let expected, expected != actual {
            throw ImageError(
                code: .digestMismatch, reference: reference.description, registry: reference.registry,
                digest: expected.description, detail: "manifest hashes to \(actual)")
        }
        let announced = response.headers.first(name: "Content-Type").map(MediaType.init(rawValue:))
        let mediaType = Self.sniffMediaType(bytes) ?? announced ?? .ociManifest
        return (Descriptor(mediaType: mediaType, digest: actual, size: Int64(bytes.count)), bytes)
    }

    /// The `mediaType` a manifest declares, or what its shape says (an OCI document may omit it).
    static func sniffMediaType(_ bytes: [UInt8]) -> MediaType? {
        struct Probe: Decodable {
            var mediaType: MediaType?
            var manifests: [Descriptor]?
            var config: Descriptor?
        }
        guard let probe = try? JSONDecoder().decode(Probe.self, from: Data(bytes)) else { return nil }
        if let type = probe.mediaType { return type }
        if probe.manifests != nil { return .ociIndex }
        if probe.config != nil { return .ociManifest }
        return nil
    }

    // MARK: Blobs

    /// Downloads a blob into a writer, resuming with `Range` after a dropped connection.
    ///
    /// - Parameter progress: Called with the total bytes written so far after every chunk.
    func download(
        _ descriptor: Descriptor, from reference: ImageReference, into writer: BlobWriter,
        progress: (Int64) -> Void
    ) async throws(ImageError) {
        let registry = reference.registry
        var failures = 0
        while writer.offset < descriptor.size {
            let start = writer.offset
            var headers: [(String, String)] = []
            if start > 0 { headers.append(("Range", "bytes=\(start)-")) }
            let response = try await send(
                .GET, registry: registry, path: "/v2/\(reference.repository)/blobs/\(descriptor.digest)",
                scopes: Self.pullScope(reference), headers: headers)
            try await expect(
                response, [.ok, .partialContent], registry: registry, what: "get blob", reference: reference.description,
                digest: descriptor.digest.description)
            if response.status == .ok && start > 0 {
                logger.debug("registry ignored range request; restarting blob", metadata: ["digest": "\(descriptor.digest)"])
                try writer.reset()
            }
            do {
                for try await buffer in response.body {
                    try buffer.withReadableBytes { (bytes) throws(ImageError) in try writer.write(bytes) }
                    progress(writer.offset)
                }
                if writer.offset < descriptor.size { throw ImageError(code: .network, detail: "connection closed early") }
            } catch let error as ImageError where error.code != .network {
                throw error
            } catch {
                if writer.offset > start { failures = 0 }
                failures += 1
                guard failures < configuration.retry.maxAttempts, !Task.isCancelled else {
                    throw ImageError(
                        code: .network, reference: reference.description, registry: registry,
                        digest: descriptor.digest.description, detail: "download failed at byte \(writer.offset): \(error)")
                }
                logger.debug(
                    "blob download interrupted; resuming",
                    metadata: ["digest": "\(descriptor.digest)", "offset": "\(writer.offset)", "error": "\(error)"])
                try await backoff(failures, registry: registry, why: "\(error)")
            }
        }
        try writer.commit()
    }
}

extension ByteBuffer {
    /// `withUnsafeReadableBytes` that keeps the typed error.
    func withReadableBytes<R>(_ body: (UnsafeRawBufferPointer) throws(ImageError) -> R) throws(ImageError) -> R {
        let result: Result<R, ImageError> = withUnsafeReadableBytes { bytes in
            do throws(ImageError) { return .success(try body(bytes)) } catch { return .failure(error) }
        }
        return try result.get()
    }
}

/// `text` without the characters at either end that `drop` says.
private func trimming(_ text: some StringProtocol, _ drop: (Character) -> Bool) -> String {
    let start = text.drop(while: drop)
    var end = start.endIndex
    while end > start.startIndex, drop(start[start.index(before: end)]) { end = start.index(before: end) }
    return String(start[..<end])
}
