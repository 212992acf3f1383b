// pft_bind_iface.c: an LD_PRELOAD library that turns a wildcard listen address into the address of
// the job's network interface, for the Open MPI processes launch/pft-mpirun starts.
//
// Why (docs/launching.md, "Listening sockets"): Open MPI 4.1.4 binds its TCP listeners to the
// wildcard address whatever its interface settings say. `oob_tcp_if_include` and
// `btl_tcp_if_include` only choose the addresses a process advertises to its peers:
//   orte/mca/oob/tcp/oob_tcp_listener.c (mpirun, orted): create_listen() binds INADDR_ANY and
//     create_listen6() in6addr_any, unconditionally (oob_tcp_disable_ipv6_family only stops
//     advertising the IPv6 address);
//   opal/mca/btl/tcp/btl_tcp_component.c (ranks): mca_btl_tcp_component_create_listen() binds
//     getaddrinfo(NULL, "0", AI_PASSIVE), the wildcard, for AF_INET and AF_INET6
//     (btl_tcp_disable_family likewise only stops advertising).
// No MCA setting changes the bind address, and the out-of-band channel cannot be turned off
// (mpirun needs it even on one host), so the bind itself is rewritten here.
//
// Contract:
//   PFT_BIND_IFACE=SPEC[,SPEC...]   SPEC: an interface name (lo, eth0) or an IPv4 subnet
//                                   (10.1.0.0/16), as in PFT_MPIRUN_IFACE.
//   bind() of an AF_INET socket to 0.0.0.0 binds the one IPv4 address of this host that SPEC
//     names instead (the port is kept). When SPEC names no address or several on this host, the
//     bind is left as it was and one warning is printed (a socket can listen on one address or
//     on all of them).
//   bind() of an AF_INET6 socket to :: binds ::1 instead: Open MPI insists on an IPv6 listener,
//     which then answers on this host only (pft-mpirun's interfaces are IPv4).
//   Every other bind (a given address, a unix socket) passes through unchanged.
//   Without PFT_BIND_IFACE nothing is changed.
//   The library removes itself from LD_PRELOAD when it loads, so the processes its host starts
//   do not inherit it: pft-mpirun names each process that gets it (mpirun, orted, the ranks).
// Plain C, no dependency beyond libc and libdl, so it loads into any process.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr*, socklen_t);

static int warned = 0;

// Removes every LD_PRELOAD entry whose file name is this library's.
__attribute__((constructor)) static void drop_from_ld_preload(void) {
  const char* preload = getenv("LD_PRELOAD");
  if (preload == NULL) return;
  char* copy = strdup(preload);
  char* out = calloc(strlen(preload) + 1, 1);
  if (copy == NULL || out == NULL) {
    free(copy);
    free(out);
    return;
  }
  char* save = NULL;
  for (char* tok = strtok_r(copy, ": ", &save); tok != NULL; tok = strtok_r(NULL, ": ", &save)) {
    const char* base = strrchr(tok, '/');
    base = base != NULL ? base + 1 : tok;
    if (strcmp(base, "libpft_bind_iface.so") == 0) continue;
    if (out[0] != '\0') strcat(out, ":");
    strcat(out, tok);
  }
  if (out[0] == '\0')
    unsetenv("LD_PRELOAD");
  else
    setenv("LD_PRELOAD", out, 1);
  free(copy);
  free(out);
}

// Whether `addr` (network order) is named by `spec` (one entry) on interface `name`.
static int spec_matches(const char* spec, const char* name, struct in_addr addr) {
  const char* slash = strchr(spec, '/');
  if (slash == NULL) return strcmp(spec, name) == 0;
  char net_text[INET_ADDRSTRLEN];
  const size_t len = (size_t)(slash - spec);
  if (len >= sizeof net_text) return 0;
  memcpy(net_text, spec, len);
  net_text[len] = '\0';
  struct in_addr net;
  const int bits = atoi(slash + 1);
  if (inet_pton(AF_INET, net_text, &net) != 1 || bits < 0 || bits > 32) return 0;
  const uint32_t mask = bits == 0 ? 0 : htonl(~0u << (32 - bits));
  return (addr.s_addr & mask) == (net.s_addr & mask);
}

// The number of distinct IPv4 addresses of this host that `specs` names; the first in `*found`.
static int find_address(const char* specs, struct in_addr* found) {
  struct ifaddrs* list = NULL;
  if (getifaddrs(&list) != 0) return 0;
  int count = 0;
  for (struct ifaddrs* i = list; i != NULL; i = i->ifa_next) {
    if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET) continue;
    const struct in_addr a = ((const struct sockaddr_in*)i->ifa_addr)->sin_addr;
    char* copy = strdup(specs);
    if (copy == NULL) break;
    int named = 0;
    char* save = NULL;
    for (char* s = strtok_r(copy, ",", &save); s != NULL && !named; s = strtok_r(NULL, ",", &save))
      named = spec_matches(s, i->ifa_name, a);
    free(copy);
    if (!named || (count > 0 && a.s_addr == found->s_addr)) continue;
    if (count == 0) *found = a;
    ++count;
  }
  freeifaddrs(list);
  return count;
}

int bind(int fd, const struct sockaddr* addr, socklen_t len) {
  static bind_fn real_bind = NULL;
  if (real_bind == NULL) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
  if (real_bind == NULL) {
    errno = ENOSYS;
    return -1;
  }
  const char* specs = getenv("PFT_BIND_IFACE");
  if (specs == NULL || specs[0] == '\0' || addr == NULL) return real_bind(fd, addr, len);

  if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in) &&
      ((const struct sockaddr_in*)addr)->sin_addr.s_addr == htonl(INADDR_ANY)) {
    struct in_addr a;
    const int n = find_address(specs, &a);
    if (n == 1) {
      struct sockaddr_in local = *(const struct sockaddr_in*)addr;
      local.sin_addr = a;
      return real_bind(fd, (const struct sockaddr*)&local, sizeof local);
    }
    if (!warned) {
      warned = 1;
      fprintf(stderr,
              "pft_bind_iface: PFT_BIND_IFACE=%s names %d IPv4 addresses on this host (1 "
              "needed): this process listens on every interface\n",
              specs, n);
    }
    return real_bind(fd, addr, len);
  }
  if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6) &&
      IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6*)addr)->sin6_addr)) {
    struct sockaddr_in6 local = *(const struct sockaddr_in6*)addr;
    local.sin6_addr = in6addr_loopback;
    const int rc = real_bind(fd, (const struct sockaddr*)&local, sizeof local);
    // No ::1 (IPv6 off on lo): the wildcard then reaches no IPv6 network either.
    if (rc != 0 && errno == EADDRNOTAVAIL) return real_bind(fd, addr, len);
    return rc;
  }
  return real_bind(fd, addr, len);
}
