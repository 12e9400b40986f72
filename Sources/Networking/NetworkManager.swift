import FoundationEssentials
import Glibc
import SystemSupport

/// Creates bridge networks and prepares containers' network namespaces, speaking rtnetlink
/// directly (no `ip`, `brctl` or `iptables`).
///
/// Networks are set up the way CNI and Podman do it: before a container starts, Berth creates
/// a network namespace for it, pinned by a bind mount at `<root>/netns/<container>`, configures
/// it (loopback; a veth pair per network with address, MTU and default route), and the
/// container joins it. The namespace, and so the container's addresses, survive restarts of
/// the container until ``releaseSandbox(containerID:)``.
///
/// ```swift
/// let networks = try NetworkManager(root: "/var/lib/berth")
/// _ = try networks.create("backend")
/// let sandbox = try networks.prepareSandbox(
///     containerID: id, hostname: "api", mode: .bridge(["backend"]), aliases: ["api-1"])
/// var spec = ProcessSpec(rootfs: rootfs, arguments: ["/bin/httpd", "-f"])
/// sandbox.configure(&spec)           // joins the namespace, mounts /etc/hosts
/// let process = try await ProcessHandle.spawn(spec)
/// // … later, after the container is removed:
/// try networks.releaseSandbox(containerID: id)
/// ```
///
/// Every change happens under one `flock` in `<root>/networks`, so several processes embedding
/// Berth may share a root. All methods block briefly (file I/O and netlink round trips, about a
/// millisecond each); call them off latency-sensitive paths.
public final class NetworkManager: Sendable {
    /// The name of the network ``NetworkMode/bridge(_:)`` uses when given no names.
    public static let defaultNetworkName = "bridge"
    /// The default network's bridge device.
    static let defaultBridgeName = "berth0"
    /// The MTU of a network created without one: Ethernet's.
    public static let defaultMTU = 1500

    /// The Berth root directory this manager keeps its state in.
    public let root: String
    let store: NetworkStore

    /// Opens (creating when missing) the network state under a Berth root directory.
    ///
    /// - Parameter root: The Berth root, such as `/var/lib/berth`; state goes to
    ///   `<root>/networks` and namespaces to `<root>/netns`.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/io``) when the directories cannot be made.
    public init(root: String) throws(NetworkError) {
        self.root = root
        store = try NetworkStore(root: root)
    }

    // MARK: - Networks

    /// Creates a bridge network and its bridge device.
    ///
    /// - Parameters:
    ///   - name: A unique name: letters, digits, `_`, `.`, `-`, starting with a letter or digit.
    ///   - subnet: The IPv4 subnet (prefix 8 to 30); `nil` picks the first free `/24` of
    ///     `10.89.0.0/16`, then `10.90.0.0/16`, that overlaps no route of the host and no other
    ///     network.
    ///   - gateway: The host's address on the bridge; `nil` takes the subnet's first address.
    ///   - ipv6: Whether to add a random unique local (RFC 4193) `/64` as well.
    ///   - mtu: The MTU of the bridge and its veths (68 to 65535); `nil` means ``defaultMTU``.
    ///   - labels: Free-form labels.
    /// - Returns: The new network.
    /// - Throws: ``NetworkError``: ``NetworkError/Code/invalidArgument`` for a bad name, subnet,
    ///   gateway or MTU or a subnet overlapping a host route; ``NetworkError/Code/exists`` when
    ///   the name is taken or the subnet overlaps another network; ``NetworkError/Code/exhausted``
    ///   when the pool is used up; ``NetworkError/Code/netlink`` when the bridge cannot be made.
    public func create(
        _ name: String, subnet: IPv4Subnet? = nil, gateway: IPv4Address? = nil, ipv6: Bool = false,
        mtu: Int? = nil, labels: [String: String] = [:]
    ) throws(NetworkError) -> NetworkConfiguration {
        try store.withLock { () throws(NetworkError) in
            try createLocked(
                name, subnet: subnet, gateway: gateway, ipv6: ipv6, mtu: mtu, labels: labels,
                bridgeName: nil)
        }
    }

    /// Every network, sorted by name.
    ///
    /// - Throws: ``NetworkError`` (``NetworkError/Code/io``) when the state cannot be read.
    public func list() throws(NetworkError) -> [NetworkConfiguration] {
        try store.withLock { () throws(NetworkError) in
            try store.networks().map(\.configuration).sorted { $0.name < $1.name }
        }
    }

    /// A network and the containers attached to it.
    ///
    /// - Parameter nameOrID: The network's name, id, or a unique prefix of its id.
    /// - Returns: The configuration and the endpoints, ordered by address.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/notFound``) when no network matches.
    public func inspect(_ nameOrID: String) throws(NetworkError) -> NetworkInspection {
        try store.withLock { () throws(NetworkError) in
            let record = try find(nameOrID, in: store.networks())
            return NetworkInspection(
                configuration: record.configuration,
                endpoints: record.endpoints.sorted { $0.ipv4Address < $1.ipv4Address })
        }
    }

    /// Removes a network and its bridge device.
    ///
    /// - Parameter nameOrID: The network's name, id, or a unique prefix of its id.
    /// - Throws: ``NetworkError``: ``NetworkError/Code/notFound`` when no network matches,
    ///   ``NetworkError/Code/inUse`` while containers are attached (the message names them).
    public func remove(_ nameOrID: String) throws(NetworkError) {
        try store.withLock { () throws(NetworkError) in
            let record = try find(nameOrID, in: store.networks())
            let config = record.configuration
            guard record.endpoints.isEmpty else {
                let users = record.endpoints.map(\.containerID).sorted().joined(separator: ", ")
                throw NetworkError(code: .inUse, detail: "remove network \(config.name): containers attached: \(users)")
            }
            try NetlinkSocket().deleteLinkIfPresent(config.bridgeName)
            try store.deleteNetwork(config.id)
        }
    }

    // MARK: - Sandboxes

    /// Makes the network namespace for a container and attaches it as `mode` asks.
    ///
    /// Call it before the container starts and join the result with ``Sandbox/configure(_:)``.
    /// On failure nothing is left behind.
    ///
    /// - Parameters:
    ///   - containerID: The container: letters, digits, `_`, `.`, `-` (up to 128).
    ///   - hostname: The container's hostname; peers resolve it.
    ///   - mode: Which network the container gets.
    ///   - aliases: More names peers on its bridge networks resolve to it; pass the container's
    ///     name here so peers can reach it by name.
    /// - Returns: The sandbox: the namespace to join, addresses, and the files to mount.
    /// - Throws: ``NetworkError``: ``NetworkError/Code/exists`` when the container has a sandbox,
    ///   ``NetworkError/Code/notFound`` for an unknown network, ``NetworkError/Code/exhausted``
    ///   when a subnet is full, ``NetworkError/Code/invalidArgument`` for bad names,
    ///   ``NetworkError/Code/netlink`` or ``NetworkError/Code/io`` when setup fails.
    public func prepareSandbox(
        containerID: String, hostname: String, mode: NetworkMode, aliases: [String] = []
    ) throws(NetworkError) -> Sandbox {
        try Self.validate(containerID, what: "container id", maxLength: 128)
        for name in [hostname] + aliases { try Self.validateHostName(name) }
        return try store.withLock { () throws(NetworkError) in
            guard try store.sandbox(containerID) == nil else {
                throw NetworkError(code: .exists, detail: "prepare network for container \(containerID): it has one")
            }
            let directory = store.sandboxDirectory(containerID)
            var sandbox = Sandbox(
                containerID: containerID, hostname: hostname, netnsPath: nil, ownsNamespace: false, endpoints: [],
                hostsPath: directory + "/hosts", resolvConfPath: directory + "/resolv.conf",
                hostnamePath: directory + "/hostname")
            do throws(NetworkError) {
                switch mode {
                case .host:
                    break
                case .container(let netnsPath):
                    guard access(netnsPath, F_OK) == 0 else {
                        throw NetworkError(code: .notFound, detail: "join network namespace \(netnsPath): no such file")
                    }
                    sandbox.netnsPath = netnsPath
                case .none, .bridge:
                    let path = store.namespacePath(containerID)
                    NetworkNamespace.remove(at: path)  // a crash's leftover: there is no sandbox
                    try NetworkNamespace.create(at: path)
                    sandbox.netnsPath = path
                    sandbox.ownsNamespace = true
                }
                try store.save(sandbox)
                if case .bridge(let names) = mode {
                    for name in names.isEmpty ? [Self.defaultNetworkName] : names {
                        try attach(&sandbox, to: name, aliases: aliases)
                    }
                }
                try writeNameFiles(sandbox, host: mode == .host)
                return sandbox
            } catch {
                try? teardown(sandbox)
                throw error
            }
        }
    }

    /// The sandbox of a container.
    ///
    /// - Parameter containerID: The container.
    /// - Returns: Its sandbox, as prepared and connected so far.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/notFound``) when it has none.
    public func sandbox(containerID: String) throws(NetworkError) -> Sandbox {
        try store.withLock { () throws(NetworkError) in try requireSandbox(containerID) }
    }

    /// Attaches a container's sandbox to one more network, running or not (`docker network connect`).
    ///
    /// The new interface is `eth<N>`, the lowest free number; the default route stays on the first
    /// network. Peers' hosts files learn the new names.
    ///
    /// - Parameters:
    ///   - containerID: The container.
    ///   - network: The network's name, id or id prefix.
    ///   - aliases: More names peers on that network resolve to the container.
    /// - Returns: The new endpoint.
    /// - Throws: ``NetworkError``: ``NetworkError/Code/notFound``, ``NetworkError/Code/exists``
    ///   when already attached, ``NetworkError/Code/invalidArgument`` for a sandbox in host mode
    ///   or sharing another container's namespace.
    @discardableResult
    public func connect(containerID: String, network: String, aliases: [String] = []) throws(NetworkError) -> Endpoint {
        for name in aliases { try Self.validateHostName(name) }
        return try store.withLock { () throws(NetworkError) in
            var sandbox = try requireSandbox(containerID)
            guard sandbox.ownsNamespace else {
                throw NetworkError(
                    code: .invalidArgument,
                    detail:
                        "connect container \(containerID) to \(network): it uses the host's or another container's network namespace"
                )
            }
            let endpoint = try attach(&sandbox, to: network, aliases: aliases)
            try writeHosts(sandbox)
            return endpoint
        }
    }

    /// Detaches a container from one network: its veth goes, its lease is released and peers'
    /// hosts files forget it.
    ///
    /// - Parameters:
    ///   - containerID: The container.
    ///   - network: The network's name, id or id prefix.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/notFound``) when the container is not attached.
    public func disconnect(containerID: String, network: String) throws(NetworkError) {
        try store.withLock { () throws(NetworkError) in
            var sandbox = try requireSandbox(containerID)
            let record = try find(network, in: store.networks())
            guard let endpoint = sandbox.endpoints.first(where: { $0.networkID == record.configuration.id }) else {
                throw NetworkError(
                    code: .notFound,
                    detail: "disconnect container \(containerID) from \(record.configuration.name): not attached")
            }
            let before = sandbox
            try detach(endpoint)
            sandbox.endpoints.removeAll { $0.networkID == endpoint.networkID }
            try store.save(sandbox)
            try writeHosts(sandbox)
            try rewritePeers(of: before)  // the peers of the network it left, too
        }
    }

    /// Undoes ``prepareSandbox(containerID:hostname:mode:aliases:)``: deletes the veths,
    /// releases the leases, unpins the namespace and deletes the sandbox's files.
    ///
    /// Idempotent: releasing a container without a sandbox, or releasing twice, does nothing.
    ///
    /// - Parameter containerID: The container.
    /// - Throws: ``NetworkError`` when a device or file cannot be removed.
    public func releaseSandbox(containerID: String) throws(NetworkError) {
        try Self.validate(containerID, what: "container id", maxLength: 128)
        try store.withLock { () throws(NetworkError) in
            if let sandbox = try store.sandbox(containerID) {
                try teardown(sandbox)
            } else {
                // A crash between creating the namespace and saving the sandbox leaves only these.
                NetworkNamespace.remove(at: store.namespacePath(containerID))
                try store.deleteSandbox(containerID)
            }
        }
    }

    /// Releases the sandboxes of containers that are gone, and whatever a crash left behind
    /// (pinned namespaces without a sandbox, leases without a sandbox).
    ///
    /// Call it when the embedding process starts, before starting containers.
    ///
    /// - Parameter isAlive: Whether a container still exists; it is called with the lock held
    ///   and must not call back into the manager.
    /// - Returns: The containers whose leftovers were removed.
    /// - Throws: ``NetworkError`` when state cannot be read or removed.
    @discardableResult
    public func cleanupStale(isAlive: (String) -> Bool) throws(NetworkError) -> [String] {
        try store.withLock { () throws(NetworkError) in
            var cleaned: Set<String> = []
            for sandbox in try store.sandboxes() where !isAlive(sandbox.containerID) {
                try teardown(sandbox)
                cleaned.insert(sandbox.containerID)
            }
            let known = Set(try store.sandboxes().map(\.containerID))
            for name in try store.entries(store.namespacesDirectory) where !known.contains(name) {
                NetworkNamespace.remove(at: store.namespacePath(name))
                cleaned.insert(name)
            }
            for name in try store.entries(store.sandboxesDirectory) where !known.contains(name) {
                try store.deleteSandbox(name)
                cleaned.insert(name)
            }
            for var record in try store.networks() {
                let orphans = record.endpoints.filter { !known.contains($0.containerID) }
                guard !orphans.isEmpty else { continue }
                for endpoint in orphans { try detach(endpoint, record: &record) }
                try store.save(record)
                cleaned.formUnion(orphans.map(\.containerID))
            }
            return cleaned.sorted()
        }
    }

    // MARK: - Name files

    /// The `/etc/hosts` a container sees now: localhost, its own names, and every peer on its
    /// networks by hostname and alias.
    ///
    /// The sandbox's ``Sandbox/hostsPath`` always holds this text: it is rewritten whenever a
    /// peer is attached or detached.
    ///
    /// - Parameter containerID: The container.
    /// - Returns: The file's text.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/notFound``) when the container has no sandbox.
    public func hostsFile(for containerID: String) throws(NetworkError) -> String {
        try store.withLock { () throws(NetworkError) in
            try hostsText(for: try requireSandbox(containerID), networks: store.networks())
        }
    }

    /// The `/etc/resolv.conf` for containers: the given servers, or the host's without the
    /// loopback ones (a container's `127.0.0.53` is not the host's resolver).
    ///
    /// When no server is left the file has none, rather than a public resolver: Berth networks
    /// do not route to the outside, so the container could not reach one anyway.
    ///
    /// - Parameters:
    ///   - nameservers: Servers to use instead of the host's.
    ///   - searchDomains: Search domains to use instead of the host's.
    ///   - options: Options to use instead of the host's (`ndots:2`).
    ///   - hostFile: The host's resolver configuration.
    /// - Returns: The file's text.
    public func resolvConf(
        nameservers: [String]? = nil, searchDomains: [String]? = nil, options: [String]? = nil,
        hostFile: String = "/etc/resolv.conf"
    ) -> String {
        let host = (try? readWholeFile(hostFile)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        var servers: [String] = [], search: [String] = [], hostOptions: [String] = []
        for line in host.split(whereSeparator: \.isNewline) {
            let words = line.split(whereSeparator: \.isWhitespace).map(String.init)
            guard let keyword = words.first, words.count > 1 else { continue }
            switch keyword {
            case "nameserver": servers.append(words[1])
            case "search", "domain": search = Array(words.dropFirst())
            case "options": hostOptions += words.dropFirst()
            default: continue
            }
        }
        let loopback = { (server: String) in server.hasPrefix("127.") || server == "::1" }
        var text = ""
        for server in nameservers ?? servers.filter({ !loopback($0) }) { text += "nameserver \(server)\n" }
        if let domains = searchDomains ?? (search.isEmpty ? nil : search), !domains.isEmpty {
            text += "search \(domains.joined(separator: " "))\n"
        }
        if let options = options ?? (hostOptions.isEmpty ? nil : hostOptions), !options.isEmpty {
            text += "options \(options.joined(separator: " "))\n"
        }
        return text
    }
}
