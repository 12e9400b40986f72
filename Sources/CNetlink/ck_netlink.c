/* rtnetlink and sock_diag requests for the Networking target; see ck_netlink.h. */
#define _GNU_SOURCE
#include "include/ck_netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/veth.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IFA_F_NODAD
#define IFA_F_NODAD 0x02 /* Linux 2.6.19 */
#endif

/* A request under construction: header, family header and attributes in one aligned buffer. */
struct request {
    union {
        struct nlmsghdr nh;
        char bytes[1024];
    } u;
};

/* Sequence numbers tell our replies from stale ones left by an interrupted earlier request. */
static _Atomic uint32_t next_seq = 1;

static void *tail(struct request *req) { return req->u.bytes + NLMSG_ALIGN(req->u.nh.nlmsg_len); }

static int start(struct request *req, uint16_t type, uint16_t flags, const void *family_header, size_t size)
{
    memset(req, 0, sizeof(*req));
    req->u.nh.nlmsg_len = NLMSG_LENGTH(size);
    req->u.nh.nlmsg_type = type;
    req->u.nh.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
    req->u.nh.nlmsg_seq = atomic_fetch_add(&next_seq, 1);
    memcpy(NLMSG_DATA(&req->u.nh), family_header, size);
    return 0;
}

static int put(struct request *req, uint16_t type, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(req->u.nh.nlmsg_len);
    if (at + RTA_SPACE(len) > sizeof(req->u.bytes)) {
        errno = EMSGSIZE;
        return -1;
    }
    struct rtattr *rta = tail(req);
    rta->rta_type = type;
    rta->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len)
        memcpy(RTA_DATA(rta), data, len);
    req->u.nh.nlmsg_len = (uint32_t)(at + RTA_SPACE(len));
    return 0;
}

static int put_u32(struct request *req, uint16_t type, uint32_t value) { return put(req, type, &value, sizeof(value)); }

static int put_str(struct request *req, uint16_t type, const char *value)
{
    return put(req, type, value, strlen(value) + 1);
}

/* Opens a nested attribute; `end_nest` fixes its length once its children are in. */
static struct rtattr *begin_nest(struct request *req, uint16_t type)
{
    struct rtattr *nest = tail(req);
    return put(req, type, NULL, 0) == 0 ? nest : NULL;
}

static void end_nest(struct request *req, struct rtattr *nest)
{
    nest->rta_len = (unsigned short)((char *)tail(req) - (char *)nest);
}

/* Appends raw bytes (a family header inside a nest, like VETH_INFO_PEER's ifinfomsg). */
static int put_raw(struct request *req, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(req->u.nh.nlmsg_len);
    if (at + NLMSG_ALIGN(len) > sizeof(req->u.bytes)) {
        errno = EMSGSIZE;
        return -1;
    }
    memcpy(req->u.bytes + at, data, len);
    req->u.nh.nlmsg_len = (uint32_t)(at + NLMSG_ALIGN(len));
    return 0;
}

typedef int (*reply_fn)(const struct nlmsghdr *msg, void *ctx);

/*
 * Sends the request and reads until its acknowledgement (NLMSG_ERROR with code 0), an error
 * (NLMSG_ERROR with -errno) or, for dumps, NLMSG_DONE. Other messages carrying our sequence
 * number go to `on_reply`.
 */
static int transact(int fd, struct request *req, reply_fn on_reply, void *ctx)
{
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    uint32_t seq = req->u.nh.nlmsg_seq;
    ssize_t sent;
    do
        sent = sendto(fd, req->u.bytes, req->u.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
    while (sent < 0 && errno == EINTR);
    if (sent < 0)
        return -1;

    /* A dump part is at most a page or two; 32 KiB is what libmnl's MNL_SOCKET_BUFFER_SIZE allows. */
    _Alignas(struct nlmsghdr) char buf[32768];
    for (;;) {
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        /* NLMSG_OK/NLMSG_NEXT mix signed and unsigned lengths, which -Wsign-compare rejects. */
        size_t at = 0;
        while (at + sizeof(struct nlmsghdr) <= (size_t)got) {
            struct nlmsghdr *msg = (struct nlmsghdr *)(buf + at);
            if (msg->nlmsg_len < sizeof(struct nlmsghdr) || at + msg->nlmsg_len > (size_t)got)
                break;
            at += NLMSG_ALIGN(msg->nlmsg_len);
            if (msg->nlmsg_seq != seq)
                continue;
            if (msg->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *err = NLMSG_DATA(msg);
                if (err->error == 0)
                    return 0;
                errno = -err->error;
                return -1;
            }
            if (msg->nlmsg_type == NLMSG_DONE) {
                int code = 0;
                if (msg->nlmsg_len >= NLMSG_LENGTH(sizeof(int)))
                    memcpy(&code, NLMSG_DATA(msg), sizeof(code));
                if (code < 0) {
                    errno = -code;
                    return -1;
                }
                return 0;
            }
            if (on_reply && on_reply(msg, ctx) < 0)
                return -1;
        }
    }
}

int ck_nl_open(int protocol) { return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol); }

struct netns_job {
    int netns_fd;
    int protocol;
    const char *bind_path;
    int result;
    int err;
};

static void *open_in_netns(void *arg)
{
    struct netns_job *job = arg;
    if (setns(job->netns_fd, CLONE_NEWNET) < 0) {
        job->err = errno;
        return NULL;
    }
    job->result = ck_nl_open(job->protocol);
    if (job->result < 0)
        job->err = errno;
    /* The thread ends here, still in the other namespace: nothing else ever runs on it. */
    return NULL;
}

static void *create_netns(void *arg)
{
    struct netns_job *job = arg;
    if (unshare(CLONE_NEWNET) < 0) {
        job->err = errno;
        return NULL;
    }
    /* /proc/thread-self, not /proc/self: only this thread is in the new namespace. */
    if (mount("/proc/thread-self/ns/net", job->bind_path, NULL, MS_BIND, NULL) < 0) {
        job->err = errno;
        return NULL;
    }
    job->result = 0;
    return NULL;
}

static int run_on_thread(void *(*body)(void *), struct netns_job *job)
{
    pthread_t thread;
    job->result = -1;
    job->err = 0;
    int rc = pthread_create(&thread, NULL, body, job);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    pthread_join(thread, NULL);
    if (job->result < 0)
        errno = job->err;
    return job->result;
}

int ck_nl_open_in_netns(int netns_fd, int protocol)
{
    struct netns_job job = {.netns_fd = netns_fd, .protocol = protocol};
    return run_on_thread(open_in_netns, &job);
}

int ck_nl_netns_create(const char *bind_path)
{
    struct netns_job job = {.bind_path = bind_path};
    return run_on_thread(create_netns, &job);
}

static int link_index_reply(const struct nlmsghdr *msg, void *ctx)
{
    if (msg->nlmsg_type == RTM_NEWLINK)
        *(int *)ctx = ((const struct ifinfomsg *)NLMSG_DATA(msg))->ifi_index;
    return 0;
}

int ck_nl_link_index(int fd, const char *name)
{
    struct request req;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    int index = 0;
    start(&req, RTM_GETLINK, NLM_F_ACK, &ifi, sizeof(ifi));
    if (put_str(&req, IFLA_IFNAME, name) < 0 || transact(fd, &req, link_index_reply, &index) < 0)
        return -1;
    if (index <= 0) {
        errno = ENODEV;
        return -1;
    }
    return index;
}

int ck_nl_bridge_add(int fd, const char *name, const uint8_t mac[6], uint32_t mtu)
{
    struct request req;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    start(&req, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
    if (put_str(&req, IFLA_IFNAME, name) < 0 || put(&req, IFLA_ADDRESS, mac, 6) < 0)
        return -1;
    if (mtu && put_u32(&req, IFLA_MTU, mtu) < 0)
        return -1;
    struct rtattr *info = begin_nest(&req, IFLA_LINKINFO);
    if (!info || put_str(&req, IFLA_INFO_KIND, "bridge") < 0)
        return -1;
    end_nest(&req, info);
    return transact(fd, &req, NULL, NULL);
}

int ck_nl_veth_add(int fd, const char *name, const char *peer_name, uint32_t mtu, int peer_netns_fd)
{
    struct request req;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    start(&req, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof(ifi));
    if (put_str(&req, IFLA_IFNAME, name) < 0)
        return -1;
    if (mtu && put_u32(&req, IFLA_MTU, mtu) < 0)
        return -1;
    struct rtattr *info = begin_nest(&req, IFLA_LINKINFO);
    if (!info || put_str(&req, IFLA_INFO_KIND, "veth") < 0)
        return -1;
    struct rtattr *data = begin_nest(&req, IFLA_INFO_DATA);
    struct rtattr *peer = data ? begin_nest(&req, VETH_INFO_PEER) : NULL;
    /* VETH_INFO_PEER holds a whole ifinfomsg followed by the peer's own IFLA_* attributes. */
    if (!peer || put_raw(&req, &ifi, sizeof(ifi)) < 0 || put_str(&req, IFLA_IFNAME, peer_name) < 0)
        return -1;
    if (mtu && put_u32(&req, IFLA_MTU, mtu) < 0)
        return -1;
    if (put_u32(&req, IFLA_NET_NS_FD, (uint32_t)peer_netns_fd) < 0)
        return -1;
    end_nest(&req, peer);
    end_nest(&req, data);
    end_nest(&req, info);
    return transact(fd, &req, NULL, NULL);
}

int ck_nl_link_up(int fd, int index, int master_index)
{
    struct request req;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = index, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    start(&req, RTM_NEWLINK, NLM_F_ACK, &ifi, sizeof(ifi));
    if (master_index > 0 && put_u32(&req, IFLA_MASTER, (uint32_t)master_index) < 0)
        return -1;
    return transact(fd, &req, NULL, NULL);
}

int ck_nl_link_del(int fd, int index)
{
    struct request req;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = index};
    start(&req, RTM_DELLINK, NLM_F_ACK, &ifi, sizeof(ifi));
    return transact(fd, &req, NULL, NULL);
}

static size_t address_size(int family)
{
    if (family == AF_INET)
        return 4;
    if (family == AF_INET6)
        return 16;
    errno = EAFNOSUPPORT;
    return 0;
}

int ck_nl_addr_add(int fd, int index, int family, const uint8_t *addr, uint8_t prefix_len)
{
    size_t size = address_size(family);
    if (!size)
        return -1;
    struct request req;
    struct ifaddrmsg ifa = {
        .ifa_family = (uint8_t)family,
        .ifa_prefixlen = prefix_len,
        .ifa_flags = family == AF_INET6 ? IFA_F_NODAD : 0,
        .ifa_scope = RT_SCOPE_UNIVERSE,
        .ifa_index = (uint32_t)index,
    };
    start(&req, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof(ifa));
    if (put(&req, IFA_LOCAL, addr, size) < 0 || put(&req, IFA_ADDRESS, addr, size) < 0)
        return -1;
    return transact(fd, &req, NULL, NULL);
}

int ck_nl_route_add_default(int fd, int family, const uint8_t *gateway, int index)
{
    size_t size = address_size(family);
    if (!size)
        return -1;
    struct request req;
    struct rtmsg rtm = {
        .rtm_family = (uint8_t)family,
        .rtm_table = RT_TABLE_MAIN,
        .rtm_protocol = RTPROT_BOOT,
        .rtm_scope = RT_SCOPE_UNIVERSE,
        .rtm_type = RTN_UNICAST,
    };
    start(&req, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, &rtm, sizeof(rtm));
    if (put(&req, RTA_GATEWAY, gateway, size) < 0 || put_u32(&req, RTA_OIF, (uint32_t)index) < 0)
        return -1;
    return transact(fd, &req, NULL, NULL);
}

struct route_sink {
    struct ck_nl_route *out;
    int max;
    int count;
};

static int route_reply(const struct nlmsghdr *msg, void *ctx)
{
    struct route_sink *sink = ctx;
    if (msg->nlmsg_type != RTM_NEWROUTE || sink->count >= sink->max)
        return 0;
    const struct rtmsg *rtm = NLMSG_DATA(msg);
    struct ck_nl_route *route = &sink->out[sink->count++];
    memset(route, 0, sizeof(*route));
    route->family = rtm->rtm_family;
    route->dst_len = rtm->rtm_dst_len;
    route->table = rtm->rtm_table;
    int len = (int)RTM_PAYLOAD(msg);
    for (const struct rtattr *rta = RTM_RTA(rtm); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
        size_t size = RTA_PAYLOAD(rta);
        if (rta->rta_type == RTA_DST && size <= sizeof(route->dst))
            memcpy(route->dst, RTA_DATA(rta), size);
        else if (rta->rta_type == RTA_TABLE && size == sizeof(uint32_t))
            memcpy(&route->table, RTA_DATA(rta), size);
        else if (rta->rta_type == RTA_OIF && size == sizeof(int32_t))
            memcpy(&route->oif, RTA_DATA(rta), size);
    }
    return 0;
}

int ck_nl_route_dump(int fd, int family, struct ck_nl_route *out, int max)
{
    struct request req;
    struct rtmsg rtm = {.rtm_family = (uint8_t)family};
    struct route_sink sink = {.out = out, .max = max};
    start(&req, RTM_GETROUTE, NLM_F_DUMP, &rtm, sizeof(rtm));
    if (transact(fd, &req, route_reply, &sink) < 0)
        return -1;
    return sink.count;
}

struct listen_query {
    uint16_t port_be;
    int found;
};

static int listen_reply(const struct nlmsghdr *msg, void *ctx)
{
    struct listen_query *query = ctx;
    if (msg->nlmsg_type != SOCK_DIAG_BY_FAMILY || msg->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
        return 0;
    const struct inet_diag_msg *diag = NLMSG_DATA(msg);
    if (diag->id.idiag_sport == query->port_be)
        query->found = 1;
    return 0;
}

int ck_nl_tcp_listening(int diag_fd, uint16_t port)
{
    static const uint8_t families[] = {AF_INET, AF_INET6};
    struct listen_query query = {.port_be = htons(port)};
    for (size_t i = 0; i < sizeof(families) && !query.found; i++) {
        struct request req;
        struct inet_diag_req_v2 diag = {
            .sdiag_family = families[i],
            .sdiag_protocol = IPPROTO_TCP,
            .idiag_states = 1U << TCP_LISTEN,
        };
        start(&req, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &diag, sizeof(diag));
        if (transact(diag_fd, &req, listen_reply, &query) < 0)
            return -1;
    }
    return query.found;
}

int ck_nl_accept(int listen_fd) { return accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }
