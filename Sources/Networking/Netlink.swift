import CNetlink
import Glibc
import SystemSupport

/// A netlink socket bound to one network namespace: the host's, or a container's.
///
/// Every request names its object in the error. The socket stays bound to the namespace it
/// was created in (rtnetlink(7)), so it may be used from any thread once open, though by one
/// at a time (replies are matched by sequence number on one socket): hence `@unchecked`.
final class NetlinkSocket: @unchecked Sendable {
    /// `NETLINK_ROUTE` from `<linux/netlink.h>`: links, addresses, routes.
    static let route: Int32 = 0
    /// `NETLINK_SOCK_DIAG` from `<linux/netlink.h>`: socket listings, as `ss` reads them.
    static let socketDiagnostics: Int32 = 4

    private let fd: Int32
    /// Where the socket lives, for messages: `host` or the namespace file.
    let namespace: String

    /// Opens a socket in the caller's (the host's) network namespace.
    init(protocol: Int32 = NetlinkSocket.route) throws(NetworkError) {
        fd = try NetworkError.from(try sys("open netlink socket") { ck_nl_open(`protocol`) })
        namespace = "host"
    }

    /// Opens a socket inside the namespace bind-mounted at `path`.
    ///
    /// The `setns` happens on a short-lived thread of the C helper, never on the caller's.
    init(namespace path: String, protocol: Int32 = NetlinkSocket.route) throws(NetworkError) {
        let nsfd = try NetworkError.from(try sys("open network namespace \(path)") { open(path, O_RDONLY | O_CLOEXEC) })
        defer { close(nsfd) }
        fd = try NetworkError.from(try sys("open netlink socket in \(path)") { ck_nl_open_in_netns(nsfd, `protocol`) })
        namespace = path
    }

    deinit { close(fd) }

    /// The index of the interface `name`, or `nil` when there is none.
    func linkIndex(_ name: String) throws(NetworkError) -> Int32? {
        let index = ck_nl_link_index(fd, name)
        if index > 0 { return index }
        if errno == ENODEV { return nil }
        throw NetworkError.system(.netlink, "look up link \(name) in \(namespace)")
    }

    /// The index of the interface `name`; a missing one is an error.
    func requireLink(_ name: String) throws(NetworkError) -> Int32 {
        guard let index = try linkIndex(name) else {
            throw NetworkError(code: .notFound, detail: "link \(name) in \(namespace): no such device")
        }
        return index
    }

    func addBridge(_ name: String, mac: [UInt8], mtu: Int) throws(NetworkError) {
        _ = try NetworkError.netlink(try sys("create bridge \(name)") { ck_nl_bridge_add(fd, name, mac, UInt32(mtu)) })
    }

    /// Creates `name` here and its peer `peerName` directly inside the namespace at `peerNamespace`.
    func addVeth(_ name: String, peer peerName: String, mtu: Int, peerNamespace: String) throws(NetworkError) {
        let nsfd = try NetworkError.from(try sys("open network namespace \(peerNamespace)") {
            open(peerNamespace, O_RDONLY | O_CLOEXEC)
        })
        defer { close(nsfd) }
        _ = try NetworkError.netlink(try sys("create veth \(name) with peer \(peerName) in \(peerNamespace)") {
            ck_nl_veth_add(fd, name, peerName, UInt32(mtu), nsfd)
        })
    }

    /// Sets the link up, enslaving it to `master` first when given.
    func setUp(_ index: Int32, name: String, master: Int32? = nil) throws(NetworkError) {
        _ = try NetworkError.netlink(try sys("set link \(name) up in \(namespace)") { ck_nl_link_up(fd, index, master ?? 0) })
    }

    func deleteLink(_ index: Int32, name: String) throws(NetworkError) {
        _ = try NetworkError.netlink(try sys("delete link \(name) in \(namespace)") { ck_nl_link_del(fd, index) })
    }

    /// Deletes the link `name` if it exists.
    func deleteLinkIfPresent(_ name: String) throws(NetworkError) {
        guard let index = try linkIndex(name) else { return }
        do {
            try deleteLink(index, name: name)
        } catch  where error.errno?.rawValue == ENODEV {
            // Deleted meanwhile, for example with its veth peer's namespace.
        }
    }

    func addAddress(_ address: IPv4Address, prefixLength: Int, to index: Int32, name: String) throws(NetworkError) {
        _ = try NetworkError.netlink(try sys("add address \(address)/\(prefixLength) to \(name) in \(namespace)") {
            ck_nl_addr_add(fd, index, AF_INET, address.bytes, UInt8(prefixLength))
        })
    }

    func addAddress(_ address: IPv6Address, to index: Int32, name: String) throws(NetworkError) {
        _ = try NetworkError.netlink(try sys("add address \(address)/64 to \(name) in \(namespace)") {
            ck_nl_addr_add(fd, index, AF_INET6, address.bytes, 64)
        })
    }

    func addDefaultRoute(via gateway: IPv4Address, on index: Int32, name: String) throws(NetworkError) {
        _ = try NetworkError.netlink(try sys("add default route via \(gateway) dev \(name) in \(namespace)") {
            ck_nl_route_add_default(fd, AF_INET, gateway.bytes, index)
        })
    }

    func addDefaultRoute(via gateway: IPv6Address, on index: Int32, name: String) throws(NetworkError) {
        _ = try NetworkError.netlink(try sys("add default route via \(gateway) dev \(name) in \(namespace)") {
            ck_nl_route_add_default(fd, AF_INET6, gateway.bytes, index)
        })
    }

    /// Every route of `family` in every table (main, local and policy tables alike).
    func routes(family: Int32) throws(NetworkError) -> [ck_nl_route] {
        // A host with more routes than this is a router, not a container host; the overlap
        // check then sees the first 4096, in the kernel's dump order.
        var buffer = [ck_nl_route](repeating: ck_nl_route(), count: 4096)
        let count = try NetworkError.netlink(try sys("list routes in \(namespace)") {
            ck_nl_route_dump(fd, family, &buffer, Int32(buffer.count))
        })
        return Array(buffer.prefix(Int(count)))
    }

    /// Whether a TCP socket listens on `port` in this socket's namespace (a `NETLINK_SOCK_DIAG` socket).
    func tcpListening(on port: UInt16) throws(NetworkError) -> Bool {
        try NetworkError.netlink(try sys("list listening sockets in \(namespace)") { ck_nl_tcp_listening(fd, port) }) == 1
    }
}

/// Network namespaces kept alive by a bind mount of their nsfs file, as `ip netns add` does.
enum NetworkNamespace {
    /// Creates a namespace pinned at `path` with its loopback interface up.
    static func create(at path: String) throws(NetworkError) {
        let fd = try NetworkError.from(try sys("create namespace file \(path)") {
            open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        })
        close(fd)
        do {
            _ = try NetworkError.from(try sys("create network namespace at \(path)") { ck_nl_netns_create(path) })
            // A new namespace has only `lo`, and down: Docker's `none` mode brings it up.
            let socket = try NetlinkSocket(namespace: path)
            try socket.setUp(try socket.requireLink("lo"), name: "lo")
        } catch {
            remove(at: path)
            throw error
        }
    }

    /// Unpins and deletes the namespace file; the namespace itself goes once no process is in it.
    /// Missing files and unmounted files are fine, so this is idempotent.
    static func remove(at path: String) {
        // MNT_DETACH: a process inspecting the file (an `ip netns exec`) must not make this fail.
        while umount2(path, Int32(MNT_DETACH)) != 0 && errno == EINTR {}
        unlink(path)
    }
}
