/// A published port: connections to `hostIP:hostPort` on the host are forwarded to
/// `containerPort` of the container, like `docker run -p`.
///
/// ```swift
/// let web = try PortMapping(parsing: "127.0.0.1:8080:80")
/// let any = try PortMapping(parsing: "53/udp")        // a free host port, every address
/// ```
public struct PortMapping: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The transport protocol of a published port.
    public enum TransportProtocol: String, Sendable, Hashable, Codable {
        case tcp, udp
    }

    /// The host address to listen on; `0.0.0.0` (the default) is every address.
    public var hostIP: IPv4Address
    /// The host port; 0 lets ``PortForwarder/start()`` pick a free one and report it.
    public var hostPort: UInt16
    /// The port inside the container.
    public var containerPort: UInt16
    /// TCP or UDP.
    public var transport: TransportProtocol

    /// Creates a mapping.
    ///
    /// - Parameters:
    ///   - hostIP: The host address to listen on; `0.0.0.0` is every address.
    ///   - hostPort: The host port, 0 to pick one.
    ///   - containerPort: The port inside the container.
    ///   - transport: TCP or UDP.
    public init(
        hostIP: IPv4Address = IPv4Address(0), hostPort: UInt16, containerPort: UInt16,
        transport: TransportProtocol = .tcp
    ) {
        self.hostIP = hostIP
        self.hostPort = hostPort
        self.containerPort = containerPort
        self.transport = transport
    }

    /// Parses Docker's `-p` syntax: `[[hostIP:]hostPort:]containerPort[/tcp|/udp]`, where an
    /// empty or missing host port means "pick one" (`127.0.0.1::80`, `80`).
    ///
    /// - Parameter text: The specification.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/invalidArgument``) naming the bad part.
    public init(parsing text: String) throws(NetworkError) {
        var rest = Substring(text)
        var transport = TransportProtocol.tcp
        if let slash = rest.lastIndex(of: "/") {
            guard let parsed = TransportProtocol(rawValue: rest[rest.index(after: slash)...].lowercased()) else {
                throw NetworkError(
                    code: .invalidArgument, detail: "port mapping \"\(text)\": protocol must be tcp or udp")
            }
            transport = parsed
            rest = rest[..<slash]
        }
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard (1...3).contains(parts.count) else {
            throw NetworkError(
                code: .invalidArgument,
                detail: "port mapping \"\(text)\": expected [[host-ip:]host-port:]container-port[/protocol]")
        }
        let port = { (value: String, allowZero: Bool) throws(NetworkError) -> UInt16 in
            if value.isEmpty && allowZero { return 0 }
            guard let number = UInt16(value), number > 0 || allowZero else {
                throw NetworkError(
                    code: .invalidArgument, detail: "port mapping \"\(text)\": \"\(value)\" is not a port")
            }
            return number
        }
        self.init(
            hostIP: parts.count == 3 ? try IPv4Address(parts[0]) : IPv4Address(0),
            hostPort: parts.count >= 2 ? try port(parts[parts.count - 2], true) : 0,
            containerPort: try port(parts[parts.count - 1], false),
            transport: transport)
    }

    /// Docker's notation, with the host port as given (0 when it is to be picked).
    public var description: String { "\(hostIP):\(hostPort):\(containerPort)/\(transport.rawValue)" }
}
