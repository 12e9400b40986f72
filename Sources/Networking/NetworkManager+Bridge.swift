import CNetlink
import Glibc
import SystemSupport

// The bridge driver: networks, leases, veth pairs. Every function here runs with the store's
// lock held (the public methods take it), so they never take it themselves.
extension NetworkManager {
    /// The pools subnets are picked from, in order: Podman's range for new networks
    /// (`10.89.0.0/24` upwards), then the next `/16`.
    static let subnetPools: [(base: UInt32, count: UInt32)] = [(0x0A59_0000, 256), (0x0A5A_0000, 256)]

    func createLocked(
        _ name: String, subnet: IPv4Subnet?, gateway: IPv4Address?, ipv6: Bool, mtu: Int?,
        labels: [String: String], bridgeName: String?
    ) throws(NetworkError) -> NetworkConfiguration {
        try Self.validate(name, what: "network name", maxLength: 64)
        let existing = try store.networks()
        guard !existing.contains(where: { $0.configuration.name == name }) else {
            throw NetworkError(code: .exists, detail: "create network \(name): a network with that name exists")
        }
        let mtu = mtu ?? Self.defaultMTU
        guard (68...65535).contains(mtu) else {
            throw NetworkError(
                code: .invalidArgument, detail: "create network \(name): mtu \(mtu) is outside 68...65535")
        }
        let host = try NetlinkSocket()
        let taken = existing.map(\.configuration.subnet)
        // Routes inside one of our own subnets are our bridges' (and their local-table entries).
        let routes = try host.routes(family: AF_INET).compactMap { route -> IPv4Subnet? in
            guard route.family == AF_INET, route.dst_len > 0 else { return nil }
            let value = withUnsafeBytes(of: route.dst) { UInt32(bigEndian: $0.load(as: UInt32.self)) }
            return try? IPv4Subnet(IPv4Address(value), prefixLength: Int(route.dst_len))
        }.filter { route in !taken.contains { $0.overlaps(route) && $0.prefixLength <= route.prefixLength } }

        let chosen: IPv4Subnet
        if let subnet {
            guard (8...30).contains(subnet.prefixLength) else {
                throw NetworkError(
                    code: .invalidArgument,
                    detail: "create network \(name): subnet \(subnet) must have a prefix of 8 to 30")
            }
            if let other = existing.first(where: { $0.configuration.subnet.overlaps(subnet) }) {
                throw NetworkError(
                    code: .exists,
                    detail: "create network \(name): subnet \(subnet) overlaps network \(other.configuration.name)")
            }
            if let route = routes.first(where: { $0.overlaps(subnet) }) {
                throw NetworkError(
                    code: .invalidArgument,
                    detail: "create network \(name): subnet \(subnet) overlaps host route \(route)")
            }
            chosen = subnet
        } else {
            chosen = try pickSubnet(avoiding: taken + routes, for: name)
        }
        let gateway = gateway ?? chosen.address(at: 1) ?? chosen.address
        guard chosen.contains(gateway), gateway != chosen.address, gateway != chosen.address(at: chosen.size - 1) else {
            throw NetworkError(
                code: .invalidArgument,
                detail: "create network \(name): gateway \(gateway) is not a host address of \(chosen)")
        }
        var ipv6Subnet: IPv6Subnet?
        if ipv6 {
            let routes6 = try host.routes(family: AF_INET6)
            ipv6Subnet = (0..<16).lazy.map { _ in IPv6Subnet.randomUniqueLocal() }.first { candidate in
                !routes6.contains { route in
                    route.dst_len > 0
                        && candidate.overlaps(
                            routeBytes: withUnsafeBytes(of: route.dst, Array.init), length: Int(route.dst_len))
                }
            }
            guard ipv6Subnet != nil else {
                throw NetworkError(code: .exhausted, detail: "create network \(name): no free unique local ipv6 subnet")
            }
        }
        let id = Self.randomID()
        let config = NetworkConfiguration(
            name: name, id: id, driver: .bridge, subnet: chosen, gateway: gateway,
            bridgeName: bridgeName ?? "berth" + id.prefix(10), mtu: mtu, ipv6Subnet: ipv6Subnet, labels: labels)
        if bridgeName == nil {
            // Random names cannot belong to anyone else: a leftover of a network whose file was lost.
            try host.deleteLinkIfPresent(config.bridgeName)
        } else if try host.linkIndex(config.bridgeName) != nil {
            // A fixed name (the default network's) may be another Berth root's: never take it over.
            throw NetworkError(
                code: .exists,
                detail:
                    "create network \(name): bridge \(config.bridgeName) exists (another Berth root's default network?)"
            )
        }
        _ = try ensureBridge(config, host: host)
        do {
            try store.save(NetworkRecord(configuration: config, endpoints: []))
        } catch {
            try? host.deleteLinkIfPresent(config.bridgeName)
            throw error
        }
        return config
    }

    private func pickSubnet(avoiding used: [IPv4Subnet], for name: String) throws(NetworkError) -> IPv4Subnet {
        for pool in Self.subnetPools {
            for index in 0..<pool.count {
                guard let candidate = try? IPv4Subnet(IPv4Address(pool.base + index << 8), prefixLength: 24) else {
                    continue
                }
                if !used.contains(where: { $0.overlaps(candidate) }) { return candidate }
            }
        }
        throw NetworkError(
            code: .exhausted, detail: "create network \(name): every /24 of 10.89.0.0/16 and 10.90.0.0/16 is in use")
    }

    /// Finds a network by name, id, or unique id prefix.
    func find(_ nameOrID: String, in records: [NetworkRecord]) throws(NetworkError) -> NetworkRecord {
        if let record = records.first(where: { $0.configuration.name == nameOrID || $0.configuration.id == nameOrID }) {
            return record
        }
        let matches = nameOrID.isEmpty ? [] : records.filter { $0.configuration.id.hasPrefix(nameOrID) }
        if matches.count == 1, let only = matches.first { return only }
        let why = matches.isEmpty ? "no such network" : "the id prefix matches \(matches.count) networks"
        throw NetworkError(code: .notFound, detail: "network \(nameOrID): \(why)")
    }

    func requireSandbox(_ containerID: String) throws(NetworkError) -> Sandbox {
        guard let sandbox = try store.sandbox(containerID) else {
            throw NetworkError(code: .notFound, detail: "network sandbox of container \(containerID): no such sandbox")
        }
        return sandbox
    }

    /// The bridge device of a network, created (with the gateway address, forwarding off, up)
    /// when missing: after a reboot the state files remain but devices are gone. An existing
    /// bridge gets its isolation settings again, which a write of `net.ipv4.ip_forward` resets.
    func ensureBridge(_ config: NetworkConfiguration, host: NetlinkSocket) throws(NetworkError) -> Int32 {
        if let index = try host.linkIndex(config.bridgeName) {
            try Self.isolate(config.bridgeName, bridge: true, ipv6: config.ipv6Subnet != nil)
            return index
        }
        // A fixed, locally administered MAC (02:…) from the id: see ck_nl_bridge_add.
        let mac =
            [0x02]
            + stride(from: 0, to: 10, by: 2).map { offset -> UInt8 in
                let start = config.id.index(config.id.startIndex, offsetBy: offset)
                return UInt8(config.id[start..<config.id.index(start, offsetBy: 2)], radix: 16) ?? 0
            }
        try host.addBridge(config.bridgeName, mac: mac, mtu: config.mtu)
        do {
            let index = try host.requireLink(config.bridgeName)
            // Before any address and before it is up: no router advertisement is ever taken in.
            try Self.isolate(config.bridgeName, bridge: true, ipv6: config.ipv6Subnet != nil)
            try host.addAddress(
                config.gateway, prefixLength: config.subnet.prefixLength, to: index, name: config.bridgeName)
            if let gateway6 = config.ipv6Gateway { try host.addAddress(gateway6, to: index, name: config.bridgeName) }
            try host.setUp(index, name: config.bridgeName)
            return index
        } catch {
            try? host.deleteLinkIfPresent(config.bridgeName)
            throw error
        }
    }

    /// Leases an address on `network` and plugs a veth pair into the sandbox's namespace.
    @discardableResult
    func attach(_ sandbox: inout Sandbox, to network: String, aliases: [String]) throws(NetworkError) -> Endpoint {
        guard let netnsPath = sandbox.netnsPath else {
            throw NetworkError(
                code: .invalidArgument, detail: "attach container \(sandbox.containerID): no network namespace")
        }
        var records = try store.networks()
        if network == Self.defaultNetworkName, !records.contains(where: { $0.configuration.name == network }) {
            _ = try createLocked(
                network, subnet: nil, gateway: nil, ipv6: false, mtu: nil, labels: [:],
                bridgeName: Self.defaultBridgeName)
            records = try store.networks()
        }
        var record = try find(network, in: records)
        let config = record.configuration
        guard !record.endpoints.contains(where: { $0.containerID == sandbox.containerID }) else {
            throw NetworkError(
                code: .exists, detail: "attach container \(sandbox.containerID) to \(config.name): already attached")
        }
        let leased = Set(record.endpoints.map { $0.ipv4Address.value - config.subnet.address.value })
        let gatewayIndex = config.gateway.value - config.subnet.address.value
        // Hosts run from index 1 to size - 2 (the last address is the broadcast address).
        guard
            let index = (1..<UInt32(config.subnet.size - 1)).first(where: { $0 != gatewayIndex && !leased.contains($0) }
            ),
            let address = config.subnet.address(at: UInt64(index))
        else {
            throw NetworkError(
                code: .exhausted,
                detail: "attach container \(sandbox.containerID) to \(config.name): no free address in \(config.subnet)"
            )
        }
        let used = Set(sandbox.endpoints.map(\.interfaceName))
        let interfaceName = (0...).lazy.map { "eth\($0)" }.first { !used.contains($0) } ?? "eth0"
        let endpoint = Endpoint(
            containerID: sandbox.containerID, hostname: sandbox.hostname, aliases: aliases, networkName: config.name,
            networkID: config.id, interfaceName: interfaceName,
            hostInterface: Self.vethName(containerID: sandbox.containerID, networkID: config.id),
            ipv4Address: address, prefixLength: config.subnet.prefixLength, gateway: config.gateway,
            ipv6Address: config.ipv6Subnet?.address(host: UInt64(index)))

        let host = try NetlinkSocket()
        let bridge = try ensureBridge(config, host: host)
        try host.deleteLinkIfPresent(endpoint.hostInterface)  // a leftover of a crash
        try host.addVeth(endpoint.hostInterface, peer: interfaceName, mtu: config.mtu, peerNamespace: netnsPath)
        do {
            try Self.isolate(endpoint.hostInterface, bridge: false, ipv6: config.ipv6Subnet != nil)
            try host.setUp(try host.requireLink(endpoint.hostInterface), name: endpoint.hostInterface, master: bridge)
            let inside = try NetlinkSocket(namespace: netnsPath)
            let link = try inside.requireLink(interfaceName)
            try inside.addAddress(address, prefixLength: config.subnet.prefixLength, to: link, name: interfaceName)
            if let address6 = endpoint.ipv6Address { try inside.addAddress(address6, to: link, name: interfaceName) }
            // Up before the routes: the kernel accepts a gateway only once its subnet is on a live link.
            try inside.setUp(link, name: interfaceName)
            if sandbox.endpoints.isEmpty {
                try inside.addDefaultRoute(via: config.gateway, on: link, name: interfaceName)
                if let gateway6 = config.ipv6Gateway {
                    try inside.addDefaultRoute(via: gateway6, on: link, name: interfaceName)
                }
            }
            record.endpoints.append(endpoint)
            try store.save(record)
            sandbox.endpoints.append(endpoint)
            try store.save(sandbox)
        } catch {
            try? host.deleteLinkIfPresent(endpoint.hostInterface)
            record.endpoints.removeAll { $0.containerID == sandbox.containerID }
            try? store.save(record)
            throw error
        }
        return endpoint
    }

    /// Deletes an endpoint's veth and releases its lease.
    func detach(_ endpoint: Endpoint) throws(NetworkError) {
        guard var record = try store.networks().first(where: { $0.configuration.id == endpoint.networkID }) else {
            // The network file is gone; only the device can be left.
            try NetlinkSocket().deleteLinkIfPresent(endpoint.hostInterface)
            return
        }
        try detach(endpoint, record: &record)
        try store.save(record)
    }

    func detach(_ endpoint: Endpoint, record: inout NetworkRecord) throws(NetworkError) {
        // Deleting the host end deletes the pair (veth(4)); the container's end would otherwise
        // live on as long as a process keeps the namespace.
        try NetlinkSocket().deleteLinkIfPresent(endpoint.hostInterface)
        record.endpoints.removeAll { $0.containerID == endpoint.containerID }
    }

    /// Removes everything a sandbox holds; each step tolerates what is already gone.
    func teardown(_ sandbox: Sandbox) throws(NetworkError) {
        for endpoint in sandbox.endpoints { try detach(endpoint) }
        if sandbox.ownsNamespace, let path = sandbox.netnsPath { NetworkNamespace.remove(at: path) }
        try store.deleteSandbox(sandbox.containerID)
        try rewritePeers(of: sandbox)
    }

    /// Keeps a container-facing interface of the host (a bridge, the host end of a veth) from
    /// routing what containers send or configuring the host from it.
    ///
    /// - A bridge gets IPv4 `forwarding` off: packets arriving on it are never routed on, so
    ///   networks stay apart from one another and from the outside even where the host forwards
    ///   (ip-sysctl.rst: "conf/interface/forwarding … packets received on this interface can be
    ///   forwarded"). Any later write of `net.ipv4.ip_forward` resets this on every interface;
    ///   ``ensureBridge(_:host:)`` sets it again whenever a container attaches, and the netfilter
    ///   rules that replace it come with kernel port forwarding (issue #16).
    /// - Every such interface gets IPv6 `forwarding` and `accept_ra` off: a container's router
    ///   advertisement never gives the host an address or a route. (The kernel routes IPv6 by
    ///   `net.ipv6.conf.all.forwarding` alone; per interface, `forwarding` makes it a host.)
    /// - On a network without IPv6, IPv6 is off on them altogether (`disable_ipv6`): nothing a
    ///   container sends over IPv6 reaches the host's IPv6 stack, nor is routed by it.
    ///
    /// The IPv6 settings are skipped where the kernel has no IPv6 on the interface: the host
    /// booted with `ipv6.disable=1`, or an MTU below 1280.
    ///
    /// - Throws: ``NetworkError`` with code ``NetworkError/Code/io`` naming the setting when the
    ///   kernel refuses one.
    static func isolate(_ interface: String, bridge: Bool, ipv6: Bool) throws(NetworkError) {
        if bridge { try setInterfaceSysctl("ipv4", interface, "forwarding", to: 0) }
        // No directory: the host has no IPv6, or the interface none (an MTU below 1280).
        guard access("/proc/sys/net/ipv6/conf/\(interface)", F_OK) == 0 else { return }
        if !ipv6 { try setInterfaceSysctl("ipv6", interface, "disable_ipv6", to: 1) }
        try setInterfaceSysctl("ipv6", interface, "forwarding", to: 0)
        try setInterfaceSysctl("ipv6", interface, "accept_ra", to: 0)
    }

    /// Writes `/proc/sys/net/<family>/conf/<interface>/<name>` (without creating anything).
    private static func setInterfaceSysctl(
        _ family: String, _ interface: String, _ name: String, to value: Int
    ) throws(NetworkError) {
        let path = "/proc/sys/net/\(family)/conf/\(interface)/\(name)"
        let what = "set \(family) \(name) of \(interface) to \(value) (\(path))"
        let fd = try NetworkError.from(try sys(what) { open(path, O_WRONLY | O_CLOEXEC) })
        defer { close(fd) }
        let text = Array("\(value)\n".utf8)
        let written = try NetworkError.from(try sys(what) { write(fd, text, text.count) })
        guard written == text.count else { throw NetworkError(code: .io, detail: "\(what): short write") }
    }

    /// The host end of a container's veth on a network: `veth` and 11 hex digits of a hash of
    /// both ids, so it is found again after a crash and fits `IFNAMSIZ`.
    static func vethName(containerID: String, networkID: String) -> String {
        // FNV-1a: stable across processes, unlike Hasher.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in (containerID + "/" + networkID).utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return "veth" + (String(repeating: "0", count: 16 - hex.count) + hex).prefix(11)
    }

    static func randomID() -> String {
        (0..<4).map { _ in
            let hex = String(UInt64.random(in: 0...UInt64.max), radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }

    /// Accepts names made of letters, digits, `_`, `.` and `-`, starting with a letter or digit.
    static func validate(_ value: String, what: String, maxLength: Int) throws(NetworkError) {
        let allowed = value.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
        }
        guard allowed, let first = value.utf8.first, first != UInt8(ascii: "."), first != UInt8(ascii: "-"),
            first != UInt8(ascii: "_"), value.utf8.count <= maxLength
        else {
            throw NetworkError(
                code: .invalidArgument,
                detail:
                    "\(what) \"\(value)\": use up to \(maxLength) letters, digits, _ . - starting with a letter or digit"
            )
        }
    }

    /// Host names end up in other containers' hosts files, so nothing that could start a new
    /// line or field may pass.
    static func validateHostName(_ name: String) throws(NetworkError) {
        try validate(name, what: "host name", maxLength: 253)
    }
}
