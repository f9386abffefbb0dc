/*
 * chips/host/chip.c - host port: the application's UART is a pseudo-terminal.
 *
 * On start the program creates a pty, prints "PTY <slave path>" as its first line on stdout
 * and serves the bench protocol on it until it is killed; a client (pyserial) opens the
 * slave path like a real serial port.  We keep a slave descriptor open ourselves so the
 * master never sees a hang-up between clients.
 */
#define _XOPEN_SOURCE 600

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "port.h"

static int master_fd = -1;

uint32_t host_monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

static void make_raw(int fd)
{
    struct termios t;

    if (tcgetattr(fd, &t) != 0)
        return;
    t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    t.c_oflag &= ~(tcflag_t)OPOST;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    t.c_cflag |= CS8;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    tcsetattr(fd, TCSANOW, &t);
}

void port_init(void)
{
    const char *slave_path;
    int slave_fd;

    master_fd = posix_openpt(O_RDWR | O_NOCTTY);
    if (master_fd < 0 || grantpt(master_fd) != 0 || unlockpt(master_fd) != 0) {
        perror("pty");
        exit(1);
    }
    slave_path = ptsname(master_fd);
    slave_fd = slave_path ? open(slave_path, O_RDWR | O_NOCTTY) : -1;
    if (slave_fd < 0) {
        perror("pty slave");
        exit(1);
    }
    make_raw(slave_fd);                      /* kept open for the life of the process */
    printf("PTY %s\n", slave_path);
    fflush(stdout);
}

int port_uart_getc(uint8_t *byte)
{
    struct pollfd p;
    ssize_t n;

    p.fd = master_fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 1) <= 0 || !(p.revents & POLLIN))
        return 0;
    n = read(master_fd, byte, 1);
    return n == 1;
}

void port_uart_putc(uint8_t byte)
{
    while (write(master_fd, &byte, 1) != 1) {
        if (errno != EINTR && errno != EAGAIN)
            exit(1);
    }
}

uint32_t port_stack_high_water(void)
{
    return 0;                                /* not measured on the host */
}

int main(void)
{
    port_init();
    bench_run();
    return 0;
}
