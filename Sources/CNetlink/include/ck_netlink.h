/*
 * rtnetlink and sock_diag requests for the Networking target (parent side only).
 *
 * Why C: a netlink request is a struct nlmsghdr followed by a family header (ifinfomsg,
 * ifaddrmsg, rtmsg, inet_diag_req_v2) and nested, 4-byte aligned attributes; the kernel headers
 * define all of it with macros (NLMSG_ALIGN, RTA_NEXT, IFLA_INFO_DATA, VETH_INFO_PEER) that Swift
 * cannot import. Berth never runs the `ip` binary: these functions are what `ip link`, `ip addr`,
 * `ip route` and `ss -ltn` would send (see rtnetlink(7) and sock_diag(7)).
 *
 * Entering a network namespace (setns/unshare) changes the calling thread, and Swift's
 * cooperative-pool threads must never do that, so the two namespace functions below run the
 * switch on a short-lived pthread of their own that dies afterwards. A netlink socket stays
 * bound to the namespace it was created in, so the socket they return is usable from any thread.
 *
 * Like CSyscalls' wrappers, these behave like libc system call wrappers: they return -1 (or a count or
 * an index) and set errno on failure, with the kernel's NLMSG_ERROR code as the errno.
 */
#ifndef CK_NETLINK_H
#define CK_NETLINK_H

#include <stdint.h>

/* One route from a dump: enough to tell whether a subnet overlaps it. */
struct ck_nl_route {
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t dst_len;  /* prefix length; 0 for a default route */
    uint8_t dst[16];  /* network order; only the first 4 bytes for AF_INET */
    uint32_t table;
    int32_t oif;      /* output interface index, 0 when the route has none */
};

/* A close-on-exec netlink socket (NETLINK_ROUTE, NETLINK_SOCK_DIAG) in the caller's netns. */
int ck_nl_open(int protocol);

/* The same, created inside the network namespace `netns_fd` by a short-lived thread. */
int ck_nl_open_in_netns(int netns_fd, int protocol);

/*
 * Creates a network namespace and keeps it alive by bind-mounting its nsfs file onto
 * `bind_path` (an existing, empty regular file), as `ip netns add` does. The unshare happens on
 * a short-lived thread, so the caller's namespace never changes.
 */
int ck_nl_netns_create(const char *bind_path);

/* The index of the interface called `name` in the socket's namespace (-1 with ENODEV if none). */
int ck_nl_link_index(int fd, const char *name);

/*
 * Creates a bridge (`ip link add NAME address MAC mtu MTU type bridge`). A fixed MAC keeps the
 * bridge from taking the lowest port MAC, which would change the gateway's MAC under the
 * containers' ARP caches as ports come and go. `mtu` 0 keeps the kernel default.
 */
int ck_nl_bridge_add(int fd, const char *name, const uint8_t mac[6], uint32_t mtu);

/*
 * Creates a veth pair: `name` in the socket's namespace, `peer_name` directly inside the
 * namespace `peer_netns_fd` (`ip link add NAME mtu MTU type veth peer name PEER netns FD`), so
 * no device ever appears under its final name in the wrong namespace.
 */
int ck_nl_veth_add(int fd, const char *name, const char *peer_name, uint32_t mtu, int peer_netns_fd);

/* Sets a link up, and when `master_index` > 0 enslaves it to that bridge first. */
int ck_nl_link_up(int fd, int index, int master_index);

/* Deletes a link (`ip link del`); deleting one end of a veth pair deletes both. */
int ck_nl_link_del(int fd, int index);

/*
 * Adds an address (`ip addr add ADDR/PREFIX dev INDEX`); `addr` is 4 or 16 bytes in network
 * order by `family`. IPv6 addresses get IFA_F_NODAD: the address is ours by IPAM, and duplicate
 * address detection would keep it tentative (unusable) for about a second after every start.
 */
int ck_nl_addr_add(int fd, int index, int family, const uint8_t *addr, uint8_t prefix_len);

/* Adds a default route via `gateway` on interface `index` (`ip route add default via GW dev`). */
int ck_nl_route_add_default(int fd, int family, const uint8_t *gateway, int index);

/* Dumps every route of `family` in every table; returns how many were stored (at most `max`). */
int ck_nl_route_dump(int fd, int family, struct ck_nl_route *out, int max);

/*
 * Whether a TCP socket listens on `port` (host order) in the sock_diag socket's namespace, over
 * IPv4 or IPv6 (`ss -ltn sport = :PORT`). Returns 1 or 0, or -1 with errno.
 */
int ck_nl_tcp_listening(int diag_fd, uint16_t port);

/*
 * accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) for the published-port proxy: Swift's Glibc module is
 * not built with _GNU_SOURCE, so accept4 is not visible to Swift.
 */
int ck_nl_accept(int listen_fd);

#endif
