import AsyncHTTPClient
import FoundationEssentials
public import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// Talks to OCI distribution registries: ping, resolve, manifests, blobs, uploads.
///
/// One client holds the settings (trust, insecure registries, credentials, retries) and the
/// cache of bearer tokens; it owns no connections between operations, so it needs no shutdown.
/// Each operation opens a pooled AsyncHTTPClient (HTTP/1.1, one connection per concurrent
/// blob) and closes it when done.
///
/// Authentication follows the `WWW-Authenticate` challenge: anonymous first, then Basic, or a
/// bearer token fetched from the challenge's realm for the repository's scope and cached until
/// it expires. Credentials come from ``Configuration/credentials``, then Docker's `config.json`.
public final class RegistryClient: Sendable {
    /// How the client connects and authenticates.
    public struct Configuration: Sendable {
        /// Registries (`host[:port]`) that may be reached over plain HTTP. Like Docker, Berth tries
        /// HTTPS first and falls back to HTTP only for these and for loopback registries
        /// (`localhost`, `127.0.0.0/8`, `[::1]`); every other registry needs HTTPS.
        public var insecureRegistries: Set<String> = []
        /// PEM files of extra certificate authorities trusted besides the system's.
        public var certificateAuthorities: [String] = []
        /// Credentials per registry host; they take precedence over ``dockerConfig``.
        public var credentials: [String: RegistryCredentials] = [:]
        /// Docker's `config.json`, if credentials should be read from it.
        public var dockerConfig: DockerConfig?
        /// How often and how patiently failed requests are retried.
        public var retry = RetryPolicy()
        /// How many blobs download or upload at the same time.
        public var concurrentTransfers = 4
        /// Blobs larger than this are uploaded in chunks (`PATCH`); nil uploads every blob in one `PUT`.
        public var uploadChunkSize: Int64?
        /// How long one request may wait for data before it counts as failed.
        public var readTimeout: Duration = .seconds(60)

        /// The default configuration: anonymous access, HTTPS except for loopback registries.
        public init() {}
    }

    /// How failed requests are retried: on connection errors, HTTP 5xx and 429.
    public struct RetryPolicy: Sendable, Hashable {
        /// Attempts per request, including the first; a download that makes progress gets fresh attempts.
        public var maxAttempts = 5
        /// The wait before the first retry; it doubles with every further retry.
        public var initialDelay: Duration = .milliseconds(200)
        /// The longest wait between two attempts.
        public var maxDelay: Duration = .seconds(10)

        /// The default policy: 5 attempts, 200 ms doubling up to 10 s.
        public init() {}

        func delay(forRetry retry: Int) -> Duration {
            min(initialDelay * (1 << min(retry, 20)), maxDelay)
        }
    }

    /// The settings in use.
    public let configuration: Configuration
    let logger: Logger
    private let tokens = Mutex<[String: CachedAuthorization]>([:])
    /// Registries found to speak plain HTTP (after HTTPS failed and plain HTTP is allowed).
    private let plainHTTP = Mutex<Set<String>>([])

    private struct CachedAuthorization {
        var header: String
        var expires: ContinuousClock.Instant
    }

    /// Creates a client.
    ///
    /// - Parameters:
    ///   - configuration: Trust, credentials and retry settings.
    ///   - logger: Where requests and retries are logged.
    public init(configuration: Configuration = Configuration(), logger: Logger = Logger(label: "berth.images")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs `body` with an HTTP session configured for this client, closing it afterwards.
    func withSession<T: Sendable>(_ body: (RegistrySession) async throws(ImageError) -> T) async throws(ImageError) -> T {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.additionalTrustRoots = configuration.certificateAuthorities.map { .file($0) }
        var http = HTTPClient.Configuration(
            tlsConfiguration: tls, redirectConfiguration: .follow(max: 5, allowCycles: false),
            timeout: .init(connect: .seconds(10), read: configuration.readTimeout.timeAmount),
            decompression: .disabled)
        // HTTP/1.1 with a connection per concurrent blob: distribution's HTTP/2 server answered
        // empty-bodied upload POSTs with 400 in tests, and parallel connections suit large blobs.
        http.httpVersion = .http1Only
        http.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = max(8, configuration.concurrentTransfers * 2)
        // AsyncHTTPClient would otherwise keep a request queued while it re-dials with backoff
        // until the connect timeout: an HTTPS attempt at a plain-HTTP loopback registry (its TLS
        // handshake fails in milliseconds) cost 10 s per session. ``RegistrySession/send`` has its
        // own retries with backoff, and needs the error at once to fall back to plain HTTP.
        http.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        let session = RegistrySession(client: client, registryClient: self)
        let result: Result<T, ImageError>
        do throws(ImageError) { result = .success(try await body(session)) } catch { result = .failure(error) }
        try? await client.shutdown()
        return try result.get()
    }

    /// Checks that a registry speaks the distribution API and that the credentials work.
    ///
    /// - Parameter registry: The registry host, for example `127.0.0.1:5000`.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/unauthorized`` if credentials are
    ///   missing or wrong, ``ImageError/Code/network`` if it cannot be reached.
    public func ping(_ registry: String) async throws(ImageError) {
        try await withSession { (session) throws(ImageError) in
            let response = try await session.send(.GET, registry: registry, path: "/v2/", scopes: [])
            try await session.expect(response, [.ok], registry: registry, what: "ping")
        }
    }

    /// Asks the registry what a reference points at, without downloading the manifest (`HEAD`).
    ///
    /// - Parameter reference: The image reference.
    /// - Returns: The manifest or index descriptor (media type, digest, size).
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` if the registry has no such tag.
    public func resolve(_ reference: ImageReference) async throws(ImageError) -> Descriptor {
        try await withSession { (session) throws(ImageError) in try await session.resolve(reference) }
    }

    /// Downloads a manifest or index and verifies its digest.
    ///
    /// - Parameter reference: The image reference (tag or digest).
    /// - Returns: The descriptor and the raw bytes.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/digestMismatch`` if the bytes do not
    ///   match the pinned or announced digest.
    public func manifest(_ reference: ImageReference) async throws(ImageError) -> (descriptor: Descriptor, bytes: [UInt8]) {
        try await withSession { (session) throws(ImageError) in try await session.manifest(reference) }
    }

    // MARK: - Authorization

    /// Switches a registry to plain HTTP after an HTTPS connection failed, if that is allowed.
    ///
    /// The choice is remembered for the client's lifetime, so only the first request to a
    /// registry pays for the failed HTTPS attempt.
    ///
    /// - Returns: True if the caller should retry over HTTP (also when a concurrent request
    ///   already switched the registry).
    func fallBackToPlainHTTP(_ registry: String) -> Bool {
        guard mayUsePlainHTTP(registry) else { return false }
        plainHTTP.withLock { _ = $0.insert(registry) }
        return true
    }

    func mayUsePlainHTTP(_ registry: String) -> Bool {
        let host = registry.hasPrefix("[") ? String(registry.prefix { $0 != "]" }) + "]" : String(registry.split(separator: ":").first ?? "")
        return configuration.insecureRegistries.contains(registry) || ["localhost", "127.0.0.1", "[::1]"].contains(host)
            || host.hasPrefix("127.")
    }

    func baseURL(_ registry: String) -> String {
        let host = registry == ImageReference.dockerHub ? "registry-1.docker.io" : registry
        return (plainHTTP.withLock { $0.contains(registry) } ? "http://" : "https://") + host
    }

    func credentials(for registry: String) throws(ImageError) -> RegistryCredentials? {
        if let explicit = configuration.credentials[registry] { return explicit }
        return try configuration.dockerConfig?.credentials(for: registry)
    }

    func cachedAuthorization(registry: String, scopes: [String]) -> String? {
        let key = Self.cacheKey(registry, scopes)
        return tokens.withLock { cache in
            guard let entry = cache[key] ?? cache[registry] else { return nil }
            return entry.expires > .now ? entry.header : nil
        }
    }

    func cacheAuthorization(_ header: String, registry: String, scopes: [String]?, lifetime: Duration) {
        let key = scopes.map { Self.cacheKey(registry, $0) } ?? registry
        tokens.withLock { $0[key] = CachedAuthorization(header: header, expires: .now + lifetime) }
    }

    private static func cacheKey(_ registry: String, _ scopes: [String]) -> String {
        registry + " " + scopes.sorted().joined(separator: " ")
    }
}

extension Duration {
    fileprivate var timeAmount: TimeAmount {
        .nanoseconds(components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000)
    }
}
