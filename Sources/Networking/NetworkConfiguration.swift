/// How a network connects its containers.
public enum NetworkDriver: String, Codable, Sendable, Hashable {
    /// A Linux bridge on the host with one veth pair per container, like Docker's `bridge` driver.
    case bridge
}

/// A user-defined network, as stored on disk and returned by ``NetworkManager/create(_:subnet:gateway:ipv6:mtu:labels:)``.
///
/// Berth's networks are internal: the host does not forward packets that arrive on a Berth
/// bridge (its `net.ipv4.conf.<bridge>.forwarding` is 0), so containers reach each other, the
/// gateway address and published ports, but not other networks and not the outside.
public struct NetworkConfiguration: Codable, Sendable, Hashable {
    /// The name users give, unique among networks.
    public var name: String
    /// A random 64-hex-digit id; any unique prefix of it finds the network too.
    public var id: String
    /// How containers are connected.
    public var driver: NetworkDriver
    /// The IPv4 subnet addresses are leased from.
    public var subnet: IPv4Subnet
    /// The host's address on the bridge, containers' default route.
    public var gateway: IPv4Address
    /// The bridge device on the host (at most 15 bytes, as `IFNAMSIZ` allows).
    public var bridgeName: String
    /// The MTU of the bridge and of every veth attached to it.
    public var mtu: Int
    /// The unique local IPv6 `/64` when the network has IPv6; the gateway is its `::1`.
    public var ipv6Subnet: IPv6Subnet?
    /// Free-form labels, as `docker network create --label`.
    public var labels: [String: String]

    /// The IPv6 gateway, `<subnet>::1`, when the network has IPv6.
    public var ipv6Gateway: IPv6Address? { ipv6Subnet?.address(host: 1) }
}

/// One container's attachment to a network: its interface, addresses and names there.
public struct Endpoint: Codable, Sendable, Hashable {
    /// The container the endpoint belongs to.
    public var containerID: String
    /// The container's hostname, which peers resolve.
    public var hostname: String
    /// More names peers resolve to this endpoint (the container's name, `--network-alias`).
    public var aliases: [String]
    /// The network's name.
    public var networkName: String
    /// The network's id.
    public var networkID: String
    /// The interface inside the container (`eth0`, `eth1`, …).
    public var interfaceName: String
    /// The host end of the veth pair, attached to the bridge.
    public var hostInterface: String
    /// The container's IPv4 address.
    public var ipv4Address: IPv4Address
    /// The subnet's prefix length, for `ADDRESS/PREFIX` notation.
    public var prefixLength: Int
    /// The network's gateway.
    public var gateway: IPv4Address
    /// The container's IPv6 address, when the network has IPv6.
    public var ipv6Address: IPv6Address?

    /// The names peers resolve to this endpoint: hostname first, then the aliases.
    public var names: [String] { [hostname] + aliases.filter { $0 != hostname } }
}

/// What ``NetworkManager/inspect(_:)`` reports: the network and who is attached to it.
public struct NetworkInspection: Sendable, Hashable {
    /// The network.
    public var configuration: NetworkConfiguration
    /// The attached containers, ordered by address.
    public var endpoints: [Endpoint]
}

/// Which network a container gets.
public enum NetworkMode: Sendable, Hashable {
    /// Its own network namespace with only `lo`, up (`--network none`).
    case none
    /// The host's network namespace (`--network host`): no isolation at all.
    case host
    /// The network namespace pinned at `netnsPath`, shared with another container
    /// (`--network container:<id>`; the path is that container's ``Sandbox/netnsPath``).
    case container(netnsPath: String)
    /// The named bridge networks, the first one giving the default route; an empty list means
    /// the default network ``NetworkManager/defaultNetworkName``.
    case bridge([String])
}
