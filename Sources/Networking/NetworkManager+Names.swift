import Glibc
import SystemSupport

// The files that give a container its names: /etc/hosts, /etc/resolv.conf, /etc/hostname.
extension NetworkManager {
    /// Writes all three files of a new sandbox. In host mode the host's hosts file is copied,
    /// as Docker does, since the container shares the host's addresses.
    func writeNameFiles(_ sandbox: Sandbox, host: Bool) throws(NetworkError) {
        try writeFile(sandbox.hostnamePath, Array("\(sandbox.hostname)\n".utf8))
        if host {
            try writeFile(sandbox.resolvConfPath, try NetworkError.from(try readWholeFile("/etc/resolv.conf")))
            try writeFile(sandbox.hostsPath, try NetworkError.from(try readWholeFile("/etc/hosts")))
        } else {
            try writeFile(sandbox.resolvConfPath, Array(resolvConf().utf8))
            try writeHosts(sandbox)
        }
    }

    /// Rewrites the hosts file of the sandbox and of every peer sharing a network with it.
    func writeHosts(_ sandbox: Sandbox) throws(NetworkError) {
        let networks = try store.networks()
        try writeFile(sandbox.hostsPath, Array(try hostsText(for: sandbox, networks: networks).utf8))
        try rewritePeers(of: sandbox, networks: networks)
    }

    /// Rewrites the hosts files of every sandbox that shares (or shared) a network with `sandbox`.
    func rewritePeers(of sandbox: Sandbox, networks: [NetworkRecord]? = nil) throws(NetworkError) {
        let records: [NetworkRecord]
        if let networks { records = networks } else { records = try store.networks() }
        let ids = Set(sandbox.endpoints.map(\.networkID))
        for peer in try store.sandboxes()
        where peer.containerID != sandbox.containerID && peer.endpoints.contains(where: { ids.contains($0.networkID) })
        {
            try writeFile(peer.hostsPath, Array(try hostsText(for: peer, networks: records).utf8))
        }
    }

    /// The hosts file of a sandbox: localhost, its own address and names, then its peers.
    func hostsText(for sandbox: Sandbox, networks: [NetworkRecord]) throws(NetworkError) -> String {
        var lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if sandbox.endpoints.isEmpty {
            lines.append("127.0.1.1\t\(sandbox.hostname)")
        }
        for endpoint in sandbox.endpoints {
            lines.append("\(endpoint.ipv4Address)\t\(endpoint.names.joined(separator: " "))")
            if let address6 = endpoint.ipv6Address {
                lines.append("\(address6)\t\(endpoint.names.joined(separator: " "))")
            }
        }
        let ids = Set(sandbox.endpoints.map(\.networkID))
        for record in networks where ids.contains(record.configuration.id) {
            for peer in record.endpoints.sorted(by: { $0.ipv4Address < $1.ipv4Address })
            where peer.containerID != sandbox.containerID {
                lines.append("\(peer.ipv4Address)\t\(peer.names.joined(separator: " "))")
                if let address6 = peer.ipv6Address { lines.append("\(address6)\t\(peer.names.joined(separator: " "))") }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
