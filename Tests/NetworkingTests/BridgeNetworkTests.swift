import ContainerKernel
import Foundation
import Glibc
import Networking
import TestSupport
import Testing

@Suite(.serialized)
struct BridgeNetworkTests {
    @Test func containersOnOneNetworkReachEachOtherByName() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("web-\(suffix)")
            let server = try networks.prepareSandbox(
                containerID: "web-\(suffix)", hostname: "web", mode: .bridge([network.name]), aliases: ["www"])
            let client = try networks.prepareSandbox(
                containerID: "client-\(suffix)", hostname: "client", mode: .bridge([network.name]))
            #expect(server.endpoints.first?.ipv4Address == network.subnet.address(at: 2))
            let root = try webRoot("hello from web\n")
            defer { try? root.remove() }
            let httpd = try await startHTTPServer(in: server, root: root.path)
            let fetch = try await run(
                [
                    "/bin/sh", "-c",
                    "for i in $(seq 50); do wget -q -O - http://www/index.html && exit 0; sleep 0.1; done; exit 1",
                ], in: client)
            await stop(httpd)
            #expect(fetch.status == .exited(0), "\(fetch.output)")
            #expect(fetch.output == "hello from web\n")
            let hosts = try networks.hostsFile(for: client.containerID)
            #expect(hosts.contains("\(try #require(server.endpoints.first).ipv4Address)\tweb www"))
        }
    }
}

@Suite(.serialized)
struct NetworkIsolationAndLifecycleTests {
    @Test func containersOnDifferentNetworksCannotReachEachOther() async throws {
        try await withNetworks { networks, suffix in
            let red = try networks.create("red-\(suffix)")
            let blue = try networks.create("blue-\(suffix)")
            #expect(!red.subnet.overlaps(blue.subnet))
            let server = try networks.prepareSandbox(
                containerID: "red-srv-\(suffix)", hostname: "srv", mode: .bridge([red.name]))
            let sameNet = try networks.prepareSandbox(
                containerID: "red-cli-\(suffix)", hostname: "friend", mode: .bridge([red.name]))
            let otherNet = try networks.prepareSandbox(
                containerID: "blue-cli-\(suffix)", hostname: "stranger", mode: .bridge([blue.name]))
            let address = try #require(server.endpoints.first).ipv4Address
            let root = try webRoot("red only\n")
            defer { try? root.remove() }
            let httpd = try await startHTTPServer(in: server, root: root.path)
            let friend = try await run(
                [
                    "/bin/sh", "-c",
                    "for i in $(seq 50); do wget -q -O - http://\(address)/ && exit 0; sleep 0.1; done; exit 1",
                ], in: sameNet)
            // nc, not wget: busybox 1.35's `wget -q -T` crashes when the connect fails.
            let stranger = try await run(
                ["/bin/sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 \(address) 80; echo rc=$?"],
                in: otherNet)
            await stop(httpd)
            #expect(friend.output == "red only\n", "\(friend.output)")
            // The host drops what arrives on a Berth bridge for elsewhere (forwarding is off on it,
            // and ip_error sends no ICMP then), so the connect times out.
            #expect(stranger.output.contains("rc=1\n"), "\(stranger.output)")
            #expect(!stranger.output.contains("red only"))
            // The stranger's hosts file does not know the red network's containers either.
            #expect(!(try networks.hostsFile(for: otherNet.containerID)).contains("srv"))
        }
    }

    @Test func hostsFilesFollowPeersAsTheyComeAndGo() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("names-\(suffix)")
            let first = try networks.prepareSandbox(
                containerID: "a-\(suffix)", hostname: "alpha", mode: .bridge([network.name]), aliases: ["db"])
            let firstAddress = try #require(first.endpoints.first).ipv4Address
            #expect(try networks.hostsFile(for: first.containerID).contains("\(firstAddress)\talpha db\n"))
            let second = try networks.prepareSandbox(
                containerID: "b-\(suffix)", hostname: "beta", mode: .bridge([network.name]))
            let secondAddress = try #require(second.endpoints.first).ipv4Address
            // The file on disk (what the container has mounted) learns the new peer in place.
            let onDisk = { (path: String) throws -> String in try String(contentsOfFile: path, encoding: .utf8) }
            #expect(try onDisk(first.hostsPath).contains("\(secondAddress)\tbeta\n"))
            #expect(try onDisk(second.hostsPath).contains("\(firstAddress)\talpha db\n"))
            try networks.releaseSandbox(containerID: second.containerID)
            #expect(!(try onDisk(first.hostsPath)).contains("beta"))
            // Inside a container the mounted hosts file resolves the peer.
            let resolved = try await run(["/bin/sh", "-c", "grep -w db /etc/hosts; cat /etc/hostname"], in: first)
            #expect(resolved.output == "\(firstAddress)\talpha db\nalpha\n", "\(resolved.output)")
        }
    }

    @Test func connectAndDisconnectARunningContainer() async throws {
        try await withNetworks { networks, suffix in
            let front = try networks.create("front-\(suffix)")
            let back = try networks.create("back-\(suffix)")
            let sandbox = try networks.prepareSandbox(
                containerID: "multi-\(suffix)", hostname: "multi", mode: .bridge([front.name]))
            let sleeper = try await ProcessHandle.spawn(try sandboxedSpec(["/bin/sleep", "30"], in: sandbox))
            let endpoint = try networks.connect(containerID: sandbox.containerID, network: back.name, aliases: ["api"])
            #expect(endpoint.interfaceName == "eth1")
            #expect(back.subnet.contains(endpoint.ipv4Address))
            let inside = try await run(
                ["/bin/sh", "-c", "ip -o -4 addr show dev eth1; ip route show default"],
                in: try networks.sandbox(containerID: sandbox.containerID))
            #expect(inside.output.contains("inet \(endpoint.ipv4Address)/\(endpoint.prefixLength)"), "\(inside.output)")
            #expect(inside.output.contains("default via \(front.gateway) dev eth0"), "\(inside.output)")
            do {
                try networks.connect(containerID: sandbox.containerID, network: back.name)
                Issue.record("connected twice")
            } catch let error as NetworkError { #expect(error.code == .exists) }
            do {
                try networks.remove(back.name)
                Issue.record("removed a network in use")
            } catch let error as NetworkError {
                #expect(error.code == .inUse)
                #expect(error.description.contains(sandbox.containerID))
            }
            try networks.disconnect(containerID: sandbox.containerID, network: back.name)
            #expect(try networks.inspect(back.name).endpoints.isEmpty)
            #expect(!(try hostInterfaces()).contains(endpoint.hostInterface))
            try networks.remove(back.name)
            await stop(sleeper)
        }
    }

    @Test func noneModeHasOnlyLoopbackAndContainerModeSharesIt() async throws {
        try await withNetworks { networks, suffix in
            let isolated = try networks.prepareSandbox(containerID: "none-\(suffix)", hostname: "lonely", mode: .none)
            let links = try await run(
                ["/bin/sh", "-c", "ip -o link show | cut -d: -f2; ip -o -4 addr show lo"], in: isolated)
            #expect(links.output.hasPrefix(" lo\n"), "\(links.output)")
            #expect(links.output.contains("inet 127.0.0.1/8"), "\(links.output)")
            #expect(!links.output.contains("eth0"))
            let sharing = try networks.prepareSandbox(
                containerID: "share-\(suffix)", hostname: "twin",
                mode: .container(netnsPath: try #require(isolated.netnsPath)))
            #expect(sharing.netnsPath == isolated.netnsPath && !sharing.ownsNamespace)
            // Releasing the sharer leaves the owner's namespace alone.
            try networks.releaseSandbox(containerID: sharing.containerID)
            #expect(access(try #require(isolated.netnsPath), F_OK) == 0)
            do {
                try networks.connect(containerID: sharing.containerID, network: "anything")
                Issue.record("connected a released sandbox")
            } catch let error as NetworkError { #expect(error.code == .notFound) }
        }
    }

    @Test func oneHundredCreateConnectRemoveCyclesLeaveNothing() async throws {
        try await withNetworks { networks, suffix in
            _ = try networks.list()  // creates the lock file, which stays
            let before = LeakSnapshot.take(stateDirectories: [networks.root])
            let interfacesBefore = try hostInterfaces()
            let stable = try networks.create("stable-\(suffix)")
            for index in 0..<100 {
                let network = try networks.create("cycle-\(suffix)-\(index)")
                let sandbox = try networks.prepareSandbox(
                    containerID: "cycle-\(suffix)-\(index)", hostname: "c\(index)", mode: .bridge([network.name]))
                try networks.connect(containerID: sandbox.containerID, network: stable.name)
                try networks.releaseSandbox(containerID: sandbox.containerID)
                try networks.releaseSandbox(containerID: sandbox.containerID)  // idempotent
                try networks.remove(network.name)
            }
            try networks.remove(stable.name)
            #expect(try networks.list().isEmpty)
            #expect(try hostInterfaces() == interfacesBefore)
            let leaks = await LeakSnapshot.expectClean(since: before)
            #expect(leaks.isEmpty, "\(leaks)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: networks.root + "/netns").isEmpty)
        }
    }

    @Test func staleSandboxesOfDeadContainersAreCleanedUp() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("stale-\(suffix)")
            let alive = try networks.prepareSandbox(
                containerID: "alive-\(suffix)", hostname: "alive", mode: .bridge([network.name]))
            let dead = try networks.prepareSandbox(
                containerID: "dead-\(suffix)", hostname: "dead", mode: .bridge([network.name]))
            let cleaned = try networks.cleanupStale { $0 == alive.containerID }
            #expect(cleaned == [dead.containerID])
            let endpoints = try networks.inspect(network.id).endpoints
            #expect(endpoints.map(\.containerID) == [alive.containerID])
            #expect(!(try hostInterfaces()).contains(try #require(dead.endpoints.first).hostInterface))
            // The dead container's address is leased again.
            let next = try networks.prepareSandbox(
                containerID: "next-\(suffix)", hostname: "next", mode: .bridge([network.name]))
            #expect(next.endpoints.first?.ipv4Address == dead.endpoints.first?.ipv4Address)
        }
    }

    @Test func badRequestsAreTypedErrors() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("dup-\(suffix)", subnet: try IPv4Subnet("10.89.250.0/24"))
            #expect(network.gateway == (try IPv4Address("10.89.250.1")))
            let cases: [(NetworkError.Code, () throws -> Void)] = [
                (.exists, { _ = try networks.create("dup-\(suffix)") }),
                (.exists, { _ = try networks.create("other-\(suffix)", subnet: try IPv4Subnet("10.89.250.128/25")) }),
                (.invalidArgument, { _ = try networks.create("bad name") }),
                (
                    .invalidArgument,
                    {
                        _ = try networks.create(
                            "gw-\(suffix)", subnet: try IPv4Subnet("10.89.251.0/24"),
                            gateway: try IPv4Address("10.89.252.1"))
                    }
                ),
                (.invalidArgument, { _ = try networks.create("mtu-\(suffix)", mtu: 10) }),
                (.notFound, { _ = try networks.inspect("no-such-\(suffix)") }),
                (.notFound, { try networks.remove("no-such-\(suffix)") }),
                (
                    .notFound,
                    {
                        _ = try networks.prepareSandbox(
                            containerID: "x-\(suffix)", hostname: "x", mode: .bridge(["no-such-\(suffix)"]))
                    }
                ),
                (
                    .invalidArgument,
                    { _ = try networks.prepareSandbox(containerID: "../escape", hostname: "x", mode: .none) }
                ),
                (
                    .invalidArgument,
                    {
                        _ = try networks.prepareSandbox(
                            containerID: "y-\(suffix)", hostname: "evil\n1.2.3.4 bank", mode: .none)
                    }
                ),
            ]
            for (expected, body) in cases {
                do {
                    try body()
                    Issue.record("expected \(expected)")
                } catch let error as NetworkError {
                    #expect(error.code == expected, "\(error)")
                }
            }
            // A failed prepare left nothing: the container can be prepared afterwards.
            #expect(try networks.cleanupStale { _ in true }.isEmpty)
            _ = try networks.prepareSandbox(containerID: "x-\(suffix)", hostname: "x", mode: .none)
        }
    }

    @Test func subnetsOverlappingHostRoutesAreNeverPicked() async throws {
        try await withNetworks { networks, suffix in
            // A device of the test's own (a bridge: this kernel has no dummy driver) puts a route into the pool: the picker skips it, an explicit
            // request for it is refused.
            let dummy = "berthd\(suffix.prefix(8))"
            _ = try command(["ip", "link", "add", dummy, "type", "bridge"])
            defer { _ = try? command(["ip", "link", "del", dummy]) }
            _ = try command(["ip", "addr", "add", "10.89.0.1/24", "dev", dummy])
            _ = try command(["ip", "link", "set", dummy, "up"])
            let picked = try networks.create("auto-\(suffix)")
            #expect(!picked.subnet.overlaps(try IPv4Subnet("10.89.0.0/24")))
            do {
                _ = try networks.create("clash-\(suffix)", subnet: try IPv4Subnet("10.89.0.128/25"))
                Issue.record("a subnet overlapping a host route was accepted")
            } catch let error as NetworkError { #expect(error.code == .invalidArgument, "\(error)") }
        }
    }
}

@Suite(.serialized)
struct NetworkModeTests {
    @Test func ipv6NetworksGiveUniqueLocalAddressesThatPeersReach() async throws {
        try await withNetworks { networks, suffix in
            let network = try networks.create("six-\(suffix)", ipv6: true)
            let subnet6 = try #require(network.ipv6Subnet)
            #expect(subnet6.description.hasPrefix("fd"))
            let server = try networks.prepareSandbox(
                containerID: "six-a-\(suffix)", hostname: "six-a", mode: .bridge([network.name]))
            let client = try networks.prepareSandbox(
                containerID: "six-b-\(suffix)", hostname: "six-b", mode: .bridge([network.name]))
            let address6 = try #require(server.endpoints.first?.ipv6Address)
            #expect(address6 == subnet6.address(host: 2))
            #expect(try networks.hostsFile(for: client.containerID).contains("\(address6)\tsix-a\n"))
            let root = try webRoot("over v6\n")
            defer { try? root.remove() }
            let httpd = try await startHTTPServer(in: server, root: root.path)
            let fetch = try await run(
                [
                    "/bin/sh", "-c",
                    "ip -6 route show default; for i in $(seq 50); do wget -q -O - 'http://[\(address6)]/' && exit 0; sleep 0.1; done; exit 1",
                ], in: client)
            await stop(httpd)
            #expect(
                fetch.output.contains("default via \(try #require(network.ipv6Gateway)) dev eth0"), "\(fetch.output)")
            #expect(fetch.output.hasSuffix("over v6\n"), "\(fetch.output)")
        }
    }

    @Test func theDefaultNetworkIsCreatedOnFirstUseAndHostModeJoinsNothing() async throws {
        try await withNetworks { networks, suffix in
            // The default bridge is named berth0 on every root; skip where another root has it.
            guard !(try hostInterfaces()).contains("berth0") else { return }
            let sandbox = try networks.prepareSandbox(
                containerID: "dflt-\(suffix)", hostname: "dflt", mode: .bridge([]))
            #expect(sandbox.endpoints.first?.networkName == NetworkManager.defaultNetworkName)
            #expect(try networks.inspect(NetworkManager.defaultNetworkName).configuration.bridgeName == "berth0")
            let host = try networks.prepareSandbox(containerID: "host-\(suffix)", hostname: "hosty", mode: .host)
            #expect(host.netnsPath == nil)
            var spec = try sandboxedSpec(["/bin/true"], in: host)
            #expect(!spec.namespaces.contains(.network) && spec.joinNamespaces.isEmpty)
            spec = try sandboxedSpec(["/bin/true"], in: sandbox)
            #expect(spec.joinNamespaces == [NamespaceJoin(.network, path: try #require(sandbox.netnsPath))])
        }
    }

    @Test func resolvConfDropsLoopbackNameservers() throws {
        let directory = try TemporaryDirectory(prefix: "resolv")
        defer { try? directory.remove() }
        let path = directory.path + "/resolv.conf"
        try "nameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\nsearch example.test\noptions edns0\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let networks = try NetworkManager(root: directory.path + "/root")
        #expect(networks.resolvConf(hostFile: path) == "nameserver 10.255.255.53\nsearch example.test\noptions edns0\n")
        #expect(
            networks.resolvConf(nameservers: ["10.0.0.2"], searchDomains: [], hostFile: path)
                == "nameserver 10.0.0.2\noptions edns0\n")
    }
}

@Suite(.serialized)
struct InterfaceIsolationTests {
    /// Reads a sysctl file's value without its newline.
    func sysctl(_ path: String) -> String {
        String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Every container-facing host interface (the bridge, the host end of each veth) has IPv6
    /// forwarding and router advertisements off, even where the host's defaults for new
    /// interfaces turn both on (a router's); a network without IPv6 has IPv6 off on them; the
    /// bridge keeps IPv4 forwarding off.
    @Test func containerFacingInterfacesNeitherRouteNorTakeRouterAdvertisements() async throws {
        let defaults = "/proc/sys/net/ipv6/conf/default/"
        guard access(defaults, F_OK) == 0 else { return }  // a host without IPv6
        let saved = [("forwarding", sysctl(defaults + "forwarding")), ("accept_ra", sysctl(defaults + "accept_ra"))]
        defer { for (name, value) in saved { try? writeBytes(Array("\(value)\n".utf8), to: defaults + name) } }
        try writeBytes(Array("1\n".utf8), to: defaults + "forwarding")
        try writeBytes(Array("2\n".utf8), to: defaults + "accept_ra")

        try await withNetworks { networks, suffix in
            for ipv6 in [false, true] {
                let name = "iso\(ipv6 ? 6 : 4)-\(suffix)"
                let network = try networks.create(name, ipv6: ipv6)
                let sandbox = try networks.prepareSandbox(containerID: name, hostname: "iso", mode: .bridge([network.name]))
                let veth = try #require(sandbox.endpoints.first).hostInterface
                #expect(sysctl("/proc/sys/net/ipv4/conf/\(network.bridgeName)/forwarding") == "0")
                for interface in [network.bridgeName, veth] {
                    let conf = "/proc/sys/net/ipv6/conf/\(interface)/"
                    #expect(sysctl(conf + "forwarding") == "0", "\(interface)")
                    #expect(sysctl(conf + "accept_ra") == "0", "\(interface)")
                    #expect(sysctl(conf + "disable_ipv6") == (ipv6 ? "0" : "1"), "\(interface)")
                }
                try networks.releaseSandbox(containerID: sandbox.containerID)
            }
            // A network whose MTU leaves no room for IPv6 has no IPv6 settings to make.
            let small = try networks.create("iso-small-\(suffix)", mtu: 1200)
            #expect(access("/proc/sys/net/ipv6/conf/\(small.bridgeName)", F_OK) != 0)
        }
    }

    /// A container sends router advertisements (a default route, a prefix for SLAAC) to its
    /// network, from its link-local address with hop limit 255, as a rogue router does: the
    /// host takes neither a route nor an address from them, on a network with or without IPv6.
    /// A peer container on the same network, whose interface keeps the kernel's defaults
    /// (`accept_ra` 1), takes the prefix: the advertisements are valid and reach the bridge, so
    /// the host's silence is its settings, not a lost packet.
    @Test func theHostTakesNoRouterAdvertisementFromAContainer() async throws {
        guard access("/proc/sys/net/ipv6/conf/default", F_OK) == 0 else { return }  // a host without IPv6
        try await withNetworks { networks, suffix in
            for ipv6 in [false, true] {
                let name = "ra\(ipv6 ? 6 : 4)-\(suffix)"
                let network = try networks.create(name, ipv6: ipv6)
                let sandbox = try networks.prepareSandbox(containerID: name, hostname: "ra", mode: .bridge([network.name]))
                let peer = try networks.prepareSandbox(
                    containerID: name + "-peer", hostname: "peer", mode: .bridge([network.name]))
                // The host's python3 in the sandbox's namespace (busybox cannot send raw ICMPv6).
                var spec = ProcessSpec(rootfs: nil, arguments: ["/usr/bin/python3", "-c", Self.rogueRouter])
                sandbox.configure(&spec)
                let router = try await ProcessHandle.spawn(spec)
                async let output = router.standardOutput?.collect(limit: 1 << 20).text ?? ""
                async let errors = router.standardError?.collect(limit: 1 << 20).text ?? ""
                let status = try await router.wait()
                let (sent, failed) = await (output, errors)
                #expect(status == .exited(0), "\(failed)")
                #expect(sent.hasPrefix("sent"), "\(sent) \(failed)")
                try await Task.sleep(for: .milliseconds(300))  // the host handles them
                let routes = try command(["ip", "-6", "route", "show", "dev", network.bridgeName])
                let addresses = try command(["ip", "-6", "address", "show", "dev", network.bridgeName])
                #expect(!routes.contains("proto ra") && !routes.contains("default"), "\(name): \(routes)")
                #expect(!addresses.contains("2001:db8:5ee:"), "\(name): \(addresses)")
                // /proc/net/if_inet6 of the peer's namespace: addresses as 32 hex digits.
                var read = ProcessSpec(rootfs: nil, arguments: ["/bin/cat", "/proc/net/if_inet6"])
                peer.configure(&read)
                let reader = try await ProcessHandle.spawn(read)
                async let peerAddresses = reader.standardOutput?.collect(limit: 1 << 20).text ?? ""
                _ = try await reader.wait()
                #expect(await peerAddresses.contains("20010db805ee0000"), "\(name): the peer took no address")
                try networks.releaseSandbox(containerID: peer.containerID)
                try networks.releaseSandbox(containerID: sandbox.containerID)
            }
        }
    }

    /// Sends three router advertisements on eth0 once its link-local address is usable: router
    /// lifetime 30 s, prefix 2001:db8:5ee::/64 with the on-link and autonomous flags.
    static let rogueRouter = """
        import socket, struct, time
        def linklocal_ready():
            for line in open('/proc/net/if_inet6'):
                f = line.split()
                if f[5] == 'eth0' and f[3] == '20' and not int(f[4], 16) & 0x40:
                    return True
            return False
        for _ in range(100):
            if linklocal_ready(): break
            time.sleep(0.05)
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex('eth0'))
        prefix = socket.inet_pton(socket.AF_INET6, '2001:db8:5ee::')
        ra = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 30, 0, 0)
        ra += struct.pack('!BBBBIII', 3, 4, 64, 0xC0, 60, 60, 0) + prefix
        for _ in range(3):
            s.sendto(ra, ('ff02::1', 0, 0, socket.if_nametoindex('eth0')))
            time.sleep(0.1)
        print('sent', flush=True)
        """
}
