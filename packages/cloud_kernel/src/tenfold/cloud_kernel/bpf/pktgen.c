// A small frame blaster for the end-to-end XDP benchmark: sends COUNT UDP
// frames out of IFNAME through an AF_PACKET socket with sendmmsg, every
// BLOCKED_EVERY-th one from a source in BLOCKED_BASE/24 (rotating), the rest
// from ALLOWED_SRC. RATE frames/s (0: as fast as the socket takes them).
// Prints "sent=N seconds=S" on success.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define FRAME 60

static uint16_t csum(const void *data, int len)
{
	const uint16_t *p = data;
	uint32_t sum = 0;
	for (; len > 1; len -= 2)
		sum += *p++;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4], &mac[5]) == 6 ? 0 : -1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 10) {
		fprintf(stderr, "usage: pktgen IFNAME SRC_MAC DST_MAC ALLOWED_SRC BLOCKED_BASE DST COUNT BLOCKED_EVERY RATE\n");
		return 2;
	}
	uint8_t smac[6], dmac[6];
	struct in_addr allowed, blocked, dst;
	if (parse_mac(argv[2], smac) || parse_mac(argv[3], dmac) || !inet_aton(argv[4], &allowed) ||
	    !inet_aton(argv[5], &blocked) || !inet_aton(argv[6], &dst)) {
		fprintf(stderr, "pktgen: bad address\n");
		return 2;
	}
	long count = atol(argv[7]), every = atol(argv[8]), rate = atol(argv[9]);
	int ifindex = if_nametoindex(argv[1]);
	if (!ifindex) {
		perror("pktgen: if_nametoindex");
		return 1;
	}
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
	if (fd < 0) {
		perror("pktgen: socket");
		return 1;
	}
	struct sockaddr_ll addr = {.sll_family = AF_PACKET, .sll_ifindex = ifindex, .sll_halen = 6};
	memcpy(addr.sll_addr, dmac, 6);
	static uint8_t frames[BATCH][FRAME];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	double start = now();
	long sent = 0;
	while (sent < count) {
		int n = 0;
		for (; n < BATCH && sent + n < count; n++) {
			long i = sent + n;
			uint8_t *f = frames[n];
			memset(f, 0, FRAME);
			memcpy(f, dmac, 6);
			memcpy(f + 6, smac, 6);
			f[12] = 0x08;
			struct iphdr *ip = (struct iphdr *)(f + 14);
			ip->version = 4;
			ip->ihl = 5;
			ip->ttl = 64;
			ip->protocol = IPPROTO_UDP;
			ip->tot_len = htons(FRAME - 14);
			ip->id = htons((uint16_t)i);
			uint32_t src = allowed.s_addr;
			if (every > 0 && i % every == 0)
				src = htonl((ntohl(blocked.s_addr) & 0xFFFFFF00u) | (uint32_t)(i / every % 254 + 1));
			ip->saddr = src;
			ip->daddr = dst.s_addr;
			ip->check = csum(ip, 20);
			struct udphdr *udp = (struct udphdr *)(f + 34);
			udp->source = htons(40000);
			udp->dest = htons(9000);
			udp->len = htons(FRAME - 34);
			iov[n].iov_base = f;
			iov[n].iov_len = FRAME;
			memset(&msgs[n], 0, sizeof(msgs[n]));
			msgs[n].msg_hdr.msg_iov = &iov[n];
			msgs[n].msg_hdr.msg_iovlen = 1;
			msgs[n].msg_hdr.msg_name = &addr;
			msgs[n].msg_hdr.msg_namelen = sizeof(addr);
		}
		int done = sendmmsg(fd, msgs, n, 0);
		if (done < 0 && (errno == ENOBUFS || errno == EAGAIN)) {
			// The device pushed back (a full veth ring): what a sender at full
			// speed meets; the batch is sent again, nothing is counted twice.
			sched_yield();
			continue;
		}
		if (done < 0) {
			perror("pktgen: sendmmsg");
			return 1;
		}
		sent += done;
		if (rate > 0) {
			double due = start + (double)sent / rate;
			while (now() < due)
				;
		}
	}
	printf("sent=%ld seconds=%.6f\n", sent, now() - start);
	return 0;
}
