// The token server of the distribution token-auth flow ("Docker Registry v2 authentication via
// central service"), small enough for tests: it checks Basic credentials, grants the requested
// scope as far as the user's grants allow, and returns an ES256 JWT that the real registry
// verifies against the certificate it was configured with (`auth.token.rootcertbundle`).

import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A token endpoint on a loopback address (127.0.0.1 unless told) for a `docker-registry`
/// configured with `auth: token`.
///
/// ```swift
/// let issuer = try await TokenIssuer(users: ["berth": "s3cret"], grants: ["berth": ["test/busybox": ["pull", "push"]]])
/// let registry = try RegistryServer(auth: issuer.registryAuth)
/// ```
public final class TokenIssuer: Sendable {
    /// The `service` the registry names in its challenge and the token's audience.
    public static let service = "berth-test-registry"
    /// The token's issuer, which the registry checks.
    public static let issuerName = "berth-test-issuer"

    /// `http://<host>:<port>/token`: the realm of the registry's challenge.
    public let realm: String
    /// The PEM certificate whose key signs the tokens; the registry's `rootcertbundle`.
    public let certificate: String
    private let directory: TemporaryDirectory
    /// The signing key's raw scalar (swift-crypto's key type is not `Sendable`).
    private let key: Data
    private let chain: [String]
    private let users: [String: String]
    private let grants: [String: [String: [String]]]
    private let channel: any Channel
    private let issued = Mutex<[String]>([])
    private let received = Mutex<[String?]>([])

    /// Generates a signing key and a self-signed certificate with openssl and starts serving.
    ///
    /// - Parameters:
    ///   - users: User name → password accepted with Basic auth.
    ///   - grants: User name → repository → actions (`pull`, `push`) the user may get; the
    ///     user `""` is anonymous.
    ///   - host: The loopback address to listen on: another one than the registry's
    ///     (`127.0.0.2`) plays a realm on a foreign host.
    /// - Throws: ``TestSupportError`` if openssl fails, or NIO's error if binding fails.
    public init(users: [String: String], grants: [String: [String: [String]]], host: String = "127.0.0.1") async throws {
        directory = try TemporaryDirectory(prefix: "token-issuer")
        let keyPath = directory.path + "/signing.key"
        certificate = directory.path + "/signing.pem"
        let (status, output) = try runProgram([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=berth token issuer", "-keyout", keyPath, "-out", certificate,
        ])
        guard status == 0 else { throw TestSupportError("openssl: make the token signing key: \(output)") }
        key = try P256.Signing.PrivateKey(pemRepresentation: String(decoding: try readBytes(keyPath), as: UTF8.self))
            .rawRepresentation
        // x5c holds the DER certificate in standard base64: the PEM body without its armour.
        let pem = String(decoding: try readBytes(certificate), as: UTF8.self)
        chain = [pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()]
        self.users = users
        self.grants = grants
        let box = IssuerBox()
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try child.pipeline.syncOperations.addHandler(IssuerHandler(box: box))
                }
            }
            .bind(host: host, port: 0).get()
        realm = "http://\(host):\(channel.localAddress?.port ?? 0)/token"
        box.issuer.withLock { $0 = self }
    }

    /// The registry configuration that trusts this issuer.
    public var registryAuth: RegistryServer.Auth {
        .token(realm: realm, service: Self.service, issuer: Self.issuerName, rootCertificate: certificate)
    }

    /// One line per token issued: `user scope scope…` (what was granted), in order.
    public var tokens: [String] { issued.withLock { $0 } }

    /// The `Authorization` header of every token request, in order (nil: none was sent).
    public var authorizations: [String?] { received.withLock { $0 } }

    /// Stops serving and deletes the key.
    public func stop() async throws {
        try await channel.close()
        try directory.remove()
    }

    /// Answers `GET /token?service=…&scope=…` with the `Authorization` header it came with.
    ///
    /// - Returns: The status and the JSON body.
    fileprivate func answer(uri: String, authorization: String?) -> (HTTPResponseStatus, String) {
        received.withLock { $0.append(authorization) }
        let items = URLComponents(string: uri)?.queryItems ?? []
        var user = ""
        if let authorization {
            guard authorization.hasPrefix("Basic "), let data = Data(base64Encoded: String(authorization.dropFirst(6))),
                let text = String(data: data, encoding: .utf8), let colon = text.firstIndex(of: ":"),
                users[String(text[..<colon])] == String(text[text.index(after: colon)...])
            else {
                return (.unauthorized, #"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#)
            }
            user = String(text[..<colon])
        }
        var access: [[String: Any]] = []
        for scope in items.filter({ $0.name == "scope" }).compactMap(\.value) {
            let parts = scope.split(separator: ":").map(String.init)
            guard parts.count >= 3, parts[0] == "repository" else { continue }
            let name = parts[1..<(parts.count - 1)].joined(separator: ":")
            let allowed = Set(grants[user]?[name] ?? [])
            let actions = parts[parts.count - 1].split(separator: ",").map(String.init).filter(allowed.contains)
            access.append(["type": "repository", "name": name, "actions": actions])
        }
        let now = Int(Date().timeIntervalSince1970)
        let claims: [String: Any] = [
            "iss": Self.issuerName, "sub": user, "aud": items.first { $0.name == "service" }?.value ?? Self.service,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": UUID().uuidString, "access": access,
        ]
        let header: [String: Any] = ["typ": "JWT", "alg": "ES256", "x5c": chain]
        guard let headerJSON = try? JSONSerialization.data(withJSONObject: header),
            let claimsJSON = try? JSONSerialization.data(withJSONObject: claims),
            let signature = try? P256.Signing.PrivateKey(rawRepresentation: key).signature(for: Data((Self.base64URL(headerJSON) + "." + Self.base64URL(claimsJSON)).utf8))
        else {
            return (.internalServerError, #"{"errors":[{"code":"UNKNOWN","message":"cannot sign"}]}"#)
        }
        let token = Self.base64URL(headerJSON) + "." + Self.base64URL(claimsJSON) + "." + Self.base64URL(signature.rawRepresentation)
        let granted = access.map { "\($0["name"] ?? ""):\(($0["actions"] as? [String] ?? []).joined(separator: ","))" }
        issued.withLock { $0.append(([user.isEmpty ? "(anonymous)" : user] + granted).joined(separator: " ")) }
        return (.ok, #"{"token":"\#(token)","access_token":"\#(token)","expires_in":300}"#)
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// Lets handlers created before `init` finishes reach the issuer.
private final class IssuerBox: Sendable {
    let issuer = Mutex<TokenIssuer?>(nil)
}

private final class IssuerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let box: IssuerBox
    private var head: HTTPRequestHead?

    init(box: IssuerBox) { self.box = box }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head, let issuer = box.issuer.withLock({ $0 }) else { return }
            let (status, body) = issuer.answer(uri: head.uri, authorization: head.headers.first(name: "Authorization"))
            let headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(body.utf8.count)")])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
